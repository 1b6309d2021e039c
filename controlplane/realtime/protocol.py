"""The `/ws/rt` wire protocol: one JSON object per text frame, both ways.

Client → server: ``{"type", "room", "id", "data"}``; ``id`` (a string or number the client
picks) comes back on the reply or the error, so a client matches them up.

    subscribe    {"room", "since"?: seq}   join; with ``since``, what was missed first, then live
    unsubscribe  {"room"}
    publish      {"room", "data"}          checked against the room's schemas, stored, broadcast
    presence     {"room"}                  who is in the room now
    history      {"room", "since"?, "limit"?}
    ping         {}                        also what keeps an idle connection open

Server → client: ``message`` (``room``, ``seq``, ``data``, ``from``, ``ts``), ``join`` and
``leave`` (presence), the replies (``subscribed``, ``unsubscribed``, ``published``,
``presence``, ``history``, ``pong``), ``error`` (``code``, ``field``, ``message``) and
``reconnect`` (the server is going away: reconnect with ``since``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# A token may come as a subprotocol, ``new WebSocket(url, [SUBPROTOCOL, TOKEN_SUBPROTOCOL +
# token])``, which keeps it out of access logs (a query string is logged); ``?token=`` works too.
SUBPROTOCOL = "coreplane.rt.v1"
TOKEN_SUBPROTOCOL = "token."  # noqa: S105 - a prefix, not a secret
TYPES = frozenset({"subscribe", "unsubscribe", "publish", "presence", "history", "ping"})
ROOM = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")
ROOM_RULE = "1 to 128 of A-Z a-z 0-9 _ . : @ -"
MAX_ID_CHARS = 64
HISTORY_LIMIT = 1000  # messages one history request returns at most

# Close codes (docs/realtime.md). 1012 (service restart) asks the client to reconnect.
UNAUTHENTICATED = 4401  # no token, a bad or expired one, no console session
FORBIDDEN_ORIGIN = 4403  # a console session from a page served elsewhere
IDLE = 4408  # nothing heard for 1.5 heartbeats
TOO_SLOW = 4409  # the client read too slowly: its send queue filled up
ABUSE = 4429  # too many refused frames in a minute
FULL = 1013  # this process holds its maximum of connections: try again later
RESTART = 1012  # the server is shutting down: reconnect


class FrameError(Exception):
    """A frame refused; the connection stays open. ``code`` is the error frame's code."""

    def __init__(self, code: str, message: str, field: str | None = None, frame_id: Any = None) -> None:
        super().__init__(message)
        self.code, self.field, self.message, self.frame_id = code, field, message, frame_id


@dataclass(frozen=True)
class Frame:
    type: str
    room: str | None
    id: Any
    data: Any
    since: int | None
    limit: int | None


def parse(text: str) -> Frame:
    """The frame a client sent, or FrameError naming the field at fault."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise FrameError("invalid_json", f"the frame is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise FrameError("invalid_frame", "a frame is a JSON object {type, room, id, data}")
    frame_id = raw.get("id")
    if frame_id is not None and not _valid_id(frame_id):
        detail = f"id is a string or an integer of {MAX_ID_CHARS} characters at most"
        raise FrameError("invalid_frame", detail, "id")
    kind, room = raw.get("type"), raw.get("room")
    if kind not in TYPES:
        raise FrameError("invalid_frame", f"type is one of {', '.join(sorted(TYPES))}", "type", frame_id)
    if kind != "ping" and not (isinstance(room, str) and ROOM.match(room)):
        raise FrameError("invalid_frame", f"room is {ROOM_RULE}", "room", frame_id)
    if kind == "publish" and "data" not in raw:
        raise FrameError("invalid_frame", "a publish carries data", "data", frame_id)
    counts = {}
    for name in ("since", "limit"):
        value = raw.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise FrameError("invalid_frame", f"{name} is a whole number ≥ 0", name, frame_id)
        counts[name] = value
    return Frame(kind, room, frame_id, raw.get("data"), counts["since"], counts["limit"])


def _valid_id(value: Any) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool) and len(str(value)) <= MAX_ID_CHARS


def error_frame(error: FrameError) -> str:
    body: dict[str, Any] = {"type": "error", "code": error.code, "message": error.message}
    if error.field:
        body["field"] = error.field
    if error.frame_id is not None:
        body["id"] = error.frame_id
    return dumps(body)


def reply(kind: str, frame_id: Any, **fields: Any) -> str:
    body = {"type": kind, **fields}
    if frame_id is not None:
        body["id"] = frame_id
    return dumps(body)


def message_frame(room: str, seq: int, data_json: str, sender: str | None, ts: float) -> str:
    """A room message as every member receives it, serialized once for all of them (the
    data comes already as JSON text)."""
    return (
        f'{{"type":"message","room":{dumps(room)},"seq":{seq},"from":{dumps(sender)},'
        f'"ts":{ts:.6f},"data":{data_json}}}'
    )


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
