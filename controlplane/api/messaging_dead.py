"""Dead letters archived from the dead-letter queues: list, inspect, replay, discard; and
purging a queue. Replay and purge are actions an agent carries out (202 with the action);
discard is done at once by the control plane."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.orm import Session

from controlplane.api.actions import ActionOut, request_action
from controlplane.api.deps import OPERATOR, VIEWER, Principal
from controlplane.clock import utcnow
from controlplane.errors import NotFound
from controlplane.messaging import dead
from controlplane.schemas.ingest import Text, UtcDatetime, utc_naive
from controlplane.web import DB_SESSION, READ_SESSION

router = APIRouter(prefix="/messaging", tags=["messaging"])

State = Literal["dead", "replayed", "discarded", "any"]


class Filter(BaseModel):
    queue: str = Field(
        min_length=1, max_length=200, description="The queue the messages died in (Q, not Q.dlq)."
    )
    reason: str | None = Field(
        None, max_length=50, description="failed, invalid, rejected, expired, maxlen, ..."
    )
    since: UtcDatetime | None = Field(None, description="Only those dead since then (ISO 8601).")
    limit: int = Field(dead.MAX_SELECT, ge=1, le=dead.MAX_SELECT)


class SelectionIn(BaseModel):
    """Either ``ids`` or ``filter``; ``reason`` says why, for the audit log."""

    ids: list[uuid.UUID] | None = Field(None, min_length=1, max_length=dead.MAX_IDS)
    filter: Filter | None = None
    reason: Text | None = Field(None, max_length=2000, description="Why (kept in the audit log).")

    @model_validator(mode="after")
    def _one(self) -> SelectionIn:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give either ids or filter")
        return self

    def params(self) -> dict[str, Any]:
        if self.ids is not None:
            return {"ids": [str(i) for i in self.ids]}
        assert self.filter is not None
        out: dict[str, Any] = {"queue": self.filter.queue, "limit": self.filter.limit}
        if self.filter.reason:
            out["reason"] = self.filter.reason
        if self.filter.since:
            out["since"] = utc_naive(self.filter.since).isoformat() + "Z"
        return out


class PurgeIn(BaseModel):
    reason: Text | None = Field(None, max_length=2000, description="Why (kept in the audit log).")


class DeadLetterPage(BaseModel):
    items: list[dict[str, Any]]
    next: dict[str, str] | None = Field(description="The query parameters of the next (older) page, if any.")


class Discarded(BaseModel):
    discarded: list[str]


def _who(who: Principal) -> str:
    return f"{who.kind}:{who.name}"


@router.get("/dead-letters", response_model=DeadLetterPage, dependencies=[Depends(VIEWER)])
def list_dead_letters(
    session: Session = READ_SESSION,
    queue: str | None = Query(None, max_length=200),
    reason: str | None = Query(None, max_length=50),
    state: State = Query("dead"),
    q: str | None = Query(None, max_length=200, description="Words in the error, message id or routing key."),
    since: datetime | None = Query(None),
    limit: int = Query(100, ge=1, le=dead.MAX_LIST),
    before: datetime | None = Query(None, description="With before_id: the last row of the previous page."),
    before_id: uuid.UUID | None = Query(None),
) -> DeadLetterPage:
    cursor = (utc_naive(before), before_id or uuid.UUID(int=2**128 - 1)) if before else None
    rows = dead.list_dead(
        session, queue=queue, reason=reason, state=None if state == "any" else state, search=q,
        since=utc_naive(since) if since else None, limit=limit, before=cursor,
    )  # fmt: skip
    following = None
    if len(rows) == limit:
        following = {"before": rows[-1].dead_at.isoformat() + "Z", "before_id": str(rows[-1].id)}
    return DeadLetterPage(items=[dead.as_dict(r, body=False) for r in rows], next=following)


@router.get("/dead-letters/{dead_id}", dependencies=[Depends(VIEWER)])
def read_dead_letter(dead_id: uuid.UUID, session: Session = READ_SESSION) -> dict[str, Any]:
    return dead.as_dict(dead.get(session, dead_id))


@router.post("/dead-letters/replay", status_code=202, response_model=ActionOut)
def replay_dead_letters(
    body: SelectionIn, who: Principal = Depends(OPERATOR), session: Session = DB_SESSION
) -> ActionOut:
    params = body.params()
    dead.check_replay(params)
    if not dead.select_rows(session, params):
        raise NotFound("no archived dead letter in state dead matches: nothing to replay")
    dead.refuse_truncated(session, params)
    return request_action(session, who, dead.REPLAY, dead.TARGET, params, body.reason)


@router.post("/dead-letters/discard", response_model=Discarded)
def discard_dead_letters(
    body: SelectionIn, who: Principal = Depends(OPERATOR), session: Session = DB_SESSION
) -> Discarded:
    ids = dead.discard(session, body.params(), actor=_who(who), reason=body.reason, now=utcnow())
    return Discarded(discarded=ids)


@router.post("/queues/{name}/purge", status_code=202, response_model=ActionOut)
def purge_queue(
    name: str, body: PurgeIn | None = None, who: Principal = Depends(OPERATOR), session: Session = DB_SESSION
) -> ActionOut:
    dead.check_queue_name(name, "name", kind="path")
    return request_action(
        session, who, dead.PURGE, dead.TARGET, {"queue": name}, body.reason if body else None
    )
