"""Realtime routes: tokens for application clients, server-side publish, and reads of
rooms, presence and history (docs/realtime.md). The websocket itself is `/ws/rt`."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controlplane.api.deps import OPERATOR, VIEWER, read_body
from controlplane.errors import Rejected, Unreadable
from controlplane.realtime import protocol, tokens
from controlplane.realtime.rooms import MAX_ROOMS_LISTED
from controlplane.realtime.runtime import Realtime, unavailable

router = APIRouter(prefix="/realtime", tags=["realtime"])
_GLOB = re.compile(r"^[A-Za-z0-9_.:@\-*?\[\]!]{1,128}$")


class RoomMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: Any = Field(description="The message: any JSON the room's schemas accept.")
    sender: str | None = Field(None, max_length=128, description='Who it is from ("from" on the frame).')


class Published(BaseModel):
    room: str
    seq: int


class RoomOut(BaseModel):
    room: str
    last_seq: int
    active_at: float
    present: int


class Member(BaseModel):
    user: str
    client: str


class RoomDetail(BaseModel):
    room: str
    last_seq: int
    members: list[Member]


class StoredMessage(BaseModel):
    seq: int
    ts: float
    data: Any
    sender: str | None = Field(None, alias="from")


def _rt(request: Request) -> Realtime:
    return request.app.state.realtime


def _room(room: str) -> str:
    if not protocol.ROOM.match(room):
        raise Rejected.field(f"room: {protocol.ROOM_RULE}", "room", "invalid", kind="path")
    return room


@router.post("/tokens", status_code=201, response_model=tokens.TokenOut, dependencies=[Depends(OPERATOR)])
def issue_token(request: Request, body: tokens.TokenRequest) -> tokens.TokenOut:
    """A short-lived token an application hands its user's client for `/ws/rt`."""
    for name, patterns in (("join", body.join), ("publish", body.publish)):
        for i, pattern in enumerate(patterns):
            if not _GLOB.match(pattern):
                field = f"{name}[{i}]"
                detail = f"{field}: a room glob is 1 to 128 of A-Z a-z 0-9 _ . : @ - * ? [ ] !"
                raise Rejected.field(detail, field, "invalid", kind="body")
    rt = _rt(request)
    return tokens.issue(rt.secret or "", body, rt.settings.token_ttl_s)


@router.post(
    "/rooms/{room}/messages",
    status_code=201,
    response_model=Published,
    dependencies=[Depends(OPERATOR)],
    responses={
        413: {"description": "The data is over COREPLANE_REALTIME__FRAME_MAX_BYTES"},
        422: {"description": "A bad room name, or the data fails a schema of the room (the field is named)"},
        503: {"description": "Redis (history, presence, the channel layer) did not answer"},
    },
)
async def publish_to_room(request: Request, room: str) -> Published:
    rt = _rt(request)
    raw = await read_body(request, rt.settings.frame_max_bytes + 4096)
    try:
        message = RoomMessageIn.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        if err["type"] == "json_invalid":
            raise Unreadable(f"the body is not JSON: {err['msg']}") from None
        raise Rejected.field(f"{field}: {err['msg']}", field, err["msg"], kind="body") from None
    with unavailable():
        seq = await rt.publish(_room(room), message.data, sender=message.sender)
    return Published(room=room, seq=seq)


@router.get("/rooms", response_model=list[RoomOut], dependencies=[Depends(VIEWER)])
async def list_rooms(request: Request, limit: int = Query(100, ge=1, le=MAX_ROOMS_LISTED)) -> list[RoomOut]:
    """Rooms active within the history age, the most recent first."""
    with unavailable():
        rooms = await _rt(request).rooms.listing(limit)
    return [
        RoomOut(room=r.room, last_seq=r.last_seq, active_at=r.active_at, present=r.present) for r in rooms
    ]


@router.get("/rooms/{room}", response_model=RoomDetail, dependencies=[Depends(VIEWER)])
async def room_detail(request: Request, room: str) -> RoomDetail:
    rt = _rt(request)
    with unavailable():
        last = await rt.rooms.last_seq(_room(room))
        members = await rt.rooms.present(room)
    listed = [Member(user=user, client=conn) for conn, user in members[:1000]]
    return RoomDetail(room=room, last_seq=last, members=listed)


@router.get("/rooms/{room}/messages", response_model=list[StoredMessage], dependencies=[Depends(VIEWER)])
async def room_history(
    request: Request,
    room: str,
    since: int = Query(0, ge=0, description="Messages after this sequence."),
    limit: int = Query(100, ge=1, le=protocol.HISTORY_LIMIT),
) -> list[dict[str, Any]]:
    with unavailable():
        return await _rt(request).history(_room(room), since, limit)


@router.get("/stats", dependencies=[Depends(VIEWER)])
def stats(request: Request) -> dict[str, Any]:
    """This process's connections and rooms, the limits and the schemas' globs."""
    rt = _rt(request)
    limits = rt.settings.model_dump(exclude={"redis_url", "schemas"})
    return {**request.app.state.realtime_hub.stats(), "limits": limits, "schemas": rt.schemas.globs()}
