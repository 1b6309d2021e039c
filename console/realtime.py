"""Realtime pages: /realtime (the service's figures as charts from what the agent's realtime
collector stored, this process's own figures and limits, and a live list of rooms) and
/realtime/rooms/{room} (who is present, the last messages, and a form operators use to
publish a test message).

The pages call the realtime runtime (``app.state.realtime``) directly, as the API does.
Redis not answering becomes a line on the page ("unavailable: ..."), never an error page:
the figures from the store are still worth reading then. The room list re-renders on
every live tick (server.live_tick_s) rather than on a notifier channel: rooms change with
every message, which no store commit announces."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from jinja2_fragments import render_block
from sqlalchemy.orm import Session

from console import charts
from console.live import ws_url
from console.render import render, templates
from console.session import check_csrf, current_user, require_role
from controlplane.clock import utcnow
from controlplane.errors import Rejected, TooLarge, Unavailable
from controlplane.realtime import protocol
from controlplane.realtime.rooms import RedisRooms
from controlplane.realtime.runtime import Realtime, unavailable
from controlplane.web import READ_SESSION, status_of

router = APIRouter(include_in_schema=False)
log = logging.getLogger("coreplane.console.realtime")

ROOMS_LISTED = 100  # the most recently active rooms on the overview
MEMBERS_LISTED = 200  # members shown on a room's page (the count says how many there are)
HISTORY_SHOWN = 50
WINDOW, STEP_S = timedelta(hours=1), 60
# (title, unit, scale, ((line, metric), ...)): what the charts draw, from the realtime
# collector's totals (its per room-kind series carry a "kind" tag and are left out).
CHARTS = (
    ("Connections and presence", "", 1, (("connections", "coreplane_rt_connections"),
                                         ("present", "coreplane_rt_presence"))),
    ("Rooms", "", 1, (("rooms", "coreplane_rt_rooms"),)),
    ("Connections opened and closed", "/s", 1, (("opened", "coreplane_rt_connections_opened_per_second"),
                                                ("closed", "coreplane_rt_connections_closed_per_second"))),
    ("Messages in and out", "/s", 1, (("in", "coreplane_rt_messages_in_per_second"),
                                      ("out", "coreplane_rt_messages_out_per_second"))),
    ("Delivery latency", " ms", 1000, (("p50", "coreplane_rt_delivery_p50_seconds"),
                                       ("p95", "coreplane_rt_delivery_p95_seconds"),
                                       ("p99", "coreplane_rt_delivery_p99_seconds"))),
    ("Dropped and refused frames", "/s", 1, (("dropped", "coreplane_rt_frames_dropped_per_second"),
                                             ("refused", "coreplane_rt_frames_refused_per_second"))),
    ("Fan-out (members per message, mean)", "", 1, (("fan-out", "coreplane_rt_fanout_mean"),)),
)  # fmt: skip


def _rt(request: Request) -> Realtime:
    return request.app.state.realtime


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _checked_room(room: str) -> str:
    if not protocol.ROOM.match(room):
        raise Rejected.field(f"room: {protocol.ROOM_RULE}", "room", "invalid", kind="path")
    return room


# -- the overview ------------------------------------------------------------------------


def _totals(session: Session, metric: str, line: str, now: datetime) -> list[dict]:
    """The metric's series without a "kind" tag (the totals), one per service, named ``line``
    (prefixed by the service when the collector watches more than one)."""
    found = charts.query(session, metric, now=now, window=WINDOW, step_s=STEP_S, group_by="kind")
    totals = [s for s in found if s["labels"].get("kind") is None]
    several = len({s["labels"]["service_name"] for s in totals}) > 1
    for s in totals:
        s["labels"]["line"] = f"{s['labels']['service_name']} {line}" if several else line
    return totals


def _charts(session: Session) -> list[dict]:
    now = utcnow()
    out = []
    for title, unit, scale, lines in CHARTS:
        found = [s for line, metric in lines for s in _totals(session, metric, line, now)]
        data = charts.scaled(charts.aligned(found, label_key="line", unit=unit), scale)
        out.append({"title": title, "data": data, "stored": bool(found)})
    return out


async def rooms_block(rt: Realtime) -> dict[str, Any]:
    """The room list's context: its rows, or why Redis could not give them."""
    try:
        with unavailable():
            found = await rt.rooms.listing(ROOMS_LISTED)
    except Unavailable as exc:
        log.warning("the realtime page could not list the rooms: %s", exc)
        return {"rooms": None, "rooms_error": str(exc), "rooms_limit": ROOMS_LISTED}
    rows = [
        {"room": r.room, "last_seq": r.last_seq, "present": r.present, "active": _when(r.active_at)}
        for r in found
    ]
    return {"rooms": rows, "rooms_error": None, "rooms_limit": ROOMS_LISTED}


async def live_blocks(app: Any, params: dict[str, str], role: str) -> dict[str, str]:
    """The room list, as it is now (pushed on every tick)."""
    context = await rooms_block(app.state.realtime)
    return {"rt-rooms": render_block(templates.env, "realtime/overview.html", "rooms", context)}


def _process(request: Request) -> dict[str, Any]:
    """This process's own figures, its limits and the schemas' globs."""
    rt = _rt(request)
    return {
        "stats": request.app.state.realtime_hub.stats(),
        "limits": rt.settings.model_dump(exclude={"redis_url", "schemas"}),
        "globs": rt.schemas.globs(),
        "shared": isinstance(rt.rooms, RedisRooms),
    }


@router.get("/realtime")
async def realtime_page(
    request: Request, _role: str = Depends(require_role("viewer")), session: Session = READ_SESSION
) -> Response:
    # The store's queries run off the event loop: a slow one must not stall the sockets.
    drawn = await asyncio.to_thread(_charts, session)
    context = {
        "charts": drawn,
        "stored": any(c["stored"] for c in drawn),
        "live": ws_url("realtime"),
        **_process(request),
        **await rooms_block(_rt(request)),
    }
    return render(request, "realtime/overview.html", context, block="rooms")


# -- one room ------------------------------------------------------------------------------


async def _room_context(rt: Realtime, room: str) -> dict[str, Any]:
    """Who is present and the last HISTORY_SHOWN messages (newest last), or why not."""
    try:
        with unavailable():
            last = await rt.rooms.last_seq(room)
            members = await rt.rooms.present(room)
            history = await rt.history(room, max(0, last - HISTORY_SHOWN), HISTORY_SHOWN)
    except Unavailable as exc:
        log.warning("the realtime room page could not read %s: %s", room, exc)
        return {"room_error": str(exc), "members": [], "member_count": 0, "history": [], "last_seq": None}
    shown = [{"user": user, "client": conn} for conn, user in sorted(members, key=lambda m: m[1])]
    messages = [
        {"seq": m["seq"], "from": m["from"], "when": _when(m["ts"]), "data": json.dumps(m["data"], indent=1)}
        for m in history
    ]
    return {"room_error": None, "members": shown[:MEMBERS_LISTED], "member_count": len(shown),
            "history": messages, "last_seq": last}  # fmt: skip


def _can_publish(role: str) -> bool:
    return role in ("operator", "admin")


async def _room_page(
    request: Request, room: str, role: str, extra: dict[str, Any], status: int = 200
) -> Response:
    context = {"room": room, "can_publish": _can_publish(role), "members_limit": MEMBERS_LISTED,
               "form": {}, "form_error": None, "published": None, **await _room_context(_rt(request), room),
               **extra}  # fmt: skip
    return render(request, "realtime/room.html", context, status=status)


@router.get("/realtime/rooms/{room}")
async def room_page(request: Request, room: str, role: str = Depends(require_role("viewer"))) -> Response:
    published = request.query_params.get("published", "")
    extra = {"published": int(published) if published.isdigit() else None}
    return await _room_page(request, _checked_room(room), role, extra)


def _form_data(rt: Realtime, text: str) -> Any:
    """The form's JSON text as a value; Rejected naming the field ``data`` otherwise."""
    if len(text.encode()) > rt.settings.frame_max_bytes:
        detail = f"data is {len(text.encode())} bytes, over the cap of {rt.settings.frame_max_bytes}"
        raise TooLarge.field(detail, "data", "too large", kind="form")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Rejected.field(f"data is not JSON: {exc}", "data", "not JSON", kind="form") from None


@router.post("/realtime/rooms/{room}/publish")
async def publish(request: Request, room: str, role: str = Depends(require_role("operator"))) -> Response:
    """Publish a test message to the room as ``console:<user>``: data, not an action, so no
    audit row (as the API's server-side publish)."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    check_csrf(request, form.get("csrf", ""))
    _checked_room(room)
    rt = _rt(request)
    try:
        with unavailable():
            seq = await rt.publish(
                room, _form_data(rt, form.get("data", "")), sender=f"console:{current_user(request)}"
            )
    except (Rejected, Unavailable) as exc:
        extra = {"form": {"data": form.get("data", "")}, "form_error": str(exc)}
        return await _room_page(request, room, role, extra, status=status_of(exc))
    return RedirectResponse(f"/realtime/rooms/{room}?published={seq}", status_code=303)
