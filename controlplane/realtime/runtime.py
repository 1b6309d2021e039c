"""What publishing needs, in any process: the rooms' store, the schemas and the channel
layer. `coreplane serve` holds one (``app.state.realtime``) with its hub; application code
gets one from its settings through ``controlplane.realtime.publish``.

A publish checks the message, stores it (which gives its sequence), then sends it once to
the room's group on the channel layer. The group's members are processes, not connections
(hub.py): a room of 1,000 sockets on two processes costs two layer messages, not 1,000.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

from controlplane.errors import Rejected, TooLarge, Unavailable
from controlplane.realtime import metrics, protocol
from controlplane.realtime.rooms import MemoryRooms, RedisRooms, Rooms
from controlplane.realtime.schemas import RoomSchemas
from controlplane.settings import RealtimeSettings, Settings


@contextlib.contextmanager
def unavailable() -> Iterator[None]:
    """Redis (history, presence, the layer) not answering becomes Unavailable (503)."""
    from redis.exceptions import RedisError

    try:
        yield
    except (RedisError, OSError) as exc:
        raise Unavailable(f"Redis did not answer: {type(exc).__name__}: {exc}") from exc


def group(room: str) -> str:
    """The channel-layer group of a room (layer group names allow only [a-zA-Z0-9_.-])."""
    return "rt." + hashlib.sha1(room.encode(), usedforsecurity=False).hexdigest()


class Realtime:
    def __init__(self, settings: RealtimeSettings, rooms: Rooms, secret: str | None = None) -> None:
        self.settings = settings
        self.rooms = rooms
        self.schemas = RoomSchemas(settings.schemas)
        self.secret = secret  # signs tokens; None in a process that only publishes
        self._layer: Any = None

    @classmethod
    def of(cls, settings: Settings, secret: str | None = None) -> Realtime:
        rt = settings.realtime
        url = rt.redis_url or settings.server.channel_layer_url
        rooms: Rooms = (
            RedisRooms(url, rt.history_count, rt.history_age_s)
            if url
            else MemoryRooms(rt.history_count, rt.history_age_s)
        )
        return cls(rt, rooms, secret)

    @property
    def layer(self) -> Any:
        if self._layer is None:
            from channels.layers import get_channel_layer

            self._layer = get_channel_layer()
        return self._layer

    def check(self, room: str, data: Any) -> str:
        """``data`` as JSON text, once its room name, size and schemas pass; Rejected naming
        the field otherwise."""
        if not protocol.ROOM.match(room):
            raise Rejected.field(f"room: {protocol.ROOM_RULE}", "room", "invalid", kind="path")
        text = protocol.dumps(data)
        if len(text.encode()) > self.settings.frame_max_bytes:
            detail = (
                f"data is {len(text.encode())} bytes of JSON, over the cap of {self.settings.frame_max_bytes}"
            )
            raise TooLarge.field(detail, "data", "too large", kind="body")
        error = self.schemas.error(room, data)
        if error is not None:
            field, reason = error
            raise Rejected.field(f"{field}: {reason}", field, reason, kind="body")
        return text

    async def publish(self, room: str, data: Any, *, sender: str | None = None) -> int:
        """Store and broadcast one message; its sequence in the room."""
        return await self.publish_checked(room, self.check(room, data), sender)

    async def publish_checked(self, room: str, data_json: str, sender: str | None) -> int:
        ts = time.time()
        seq = await self.rooms.append(room, data_json, sender, ts)
        frame = protocol.message_frame(room, seq, data_json, sender, ts)
        await self.layer.group_send(
            group(room), {"type": "rt.message", "room": room, "seq": seq, "ts": ts, "frame": frame}
        )
        metrics.MESSAGES_IN.labels(metrics.kind(room)).inc()
        return seq

    async def announce(self, room: str, kind: str, conn: str, user: str) -> None:
        """A presence event (``join`` or ``leave``) to everyone in the room; not stored. Not
        in a room with more than ``presence_events_max`` members: N members joining would
        cost N² frames (1,000 joining: half a million), and the members of a room that big
        ask ``presence`` when they need it."""
        if await self.rooms.present_count(room) > self.settings.presence_events_max:
            return
        frame = protocol.dumps({"type": kind, "room": room, "user": user, "client": conn, "ts": time.time()})
        await self.layer.group_send(group(room), {"type": "rt.event", "room": room, "frame": frame})

    async def history(self, room: str, since: int, limit: int) -> list[dict[str, Any]]:
        stored = await self.rooms.since(room, since, min(limit, protocol.HISTORY_LIMIT))
        return [{"seq": m.seq, "from": m.sender, "ts": m.ts, "data": json.loads(m.data)} for m in stored]
