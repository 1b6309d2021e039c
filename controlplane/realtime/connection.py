"""`/ws/rt`: one application client's connection (a Channels consumer).

It authenticates with a realtime token (``?token=``) or, from a console page, the console
session and the same-origin check. Frames are routed by type (protocol.py); each reply and
error carries the request's id. Every frame to the client goes through one bounded send
queue, written by a task that waits for the socket to drain: a client reading slower than
its rooms talk fills the queue and is closed (4409) instead of growing the server's memory.

The consumer has no channel of its own on the layer: the process's hub (hub.py) receives
each room's messages once and pushes them into the members' queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from redis.exceptions import RedisError

from controlplane.errors import Rejected, TooLarge
from controlplane.realtime import metrics, protocol, tokens
from controlplane.realtime.hub import Hub
from controlplane.realtime.protocol import Frame, FrameError
from controlplane.realtime.tokens import Grant

# (scope) -> the console session's grant, a close code (a cross-origin page), or None.
SessionGrant = Callable[[dict], Grant | int | None]
_CLOSE_REASONS = {
    protocol.IDLE: "idle", protocol.TOO_SLOW: "too_slow", protocol.ABUSE: "abuse", protocol.RESTART: "restart"
}  # fmt: skip
MAX_PRESENCE_LISTED = 1000


class RealtimeConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = "coreplane-rt-none"  # not configured: no per-connection layer channel
    session_grant: SessionGrant

    async def connect(self) -> None:
        self.hub: Hub = self.scope["app"].state.realtime_hub
        self.rt = self.hub.rt
        self.settings = self.rt.settings
        self.conn_id = uuid.uuid4().hex[:16]
        self.heard = time.monotonic()
        self.rooms: dict[str, int] = {}  # room -> last sequence sent
        self.recovering: dict[str, list[tuple[int, str, float]]] = {}
        self.present: set[str] = set()
        self.outbox: deque[tuple[str | None, Any]] = deque()
        self.writer: asyncio.Task | None = None
        self.closing: int | None = None
        self.refusals: deque[float] = deque()
        self.tokens_left, self.refilled = float(self.settings.rate_burst), time.monotonic()
        grant = await self._authenticate()
        # A browser that sent its token as a subprotocol needs ours echoed, or it drops the socket.
        offered = self.scope.get("subprotocols", ())
        await self.accept(protocol.SUBPROTOCOL if protocol.SUBPROTOCOL in offered else None)
        if isinstance(grant, int):
            metrics.CLOSED.labels("refused").inc()
            await self.close(code=grant, reason=self._refusal)
            return
        if len(self.hub.connections) >= self.settings.max_connections or self.hub.draining:
            metrics.CLOSED.labels("refused").inc()
            await self.close(code=protocol.FULL, reason="this server is full or restarting: try another")
            return
        self.grant, self.user = grant, grant.user
        self.hub.connections.add(self)
        metrics.OPENED.inc()
        metrics.CONNECTIONS.inc()

    async def _authenticate(self) -> Grant | int:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        prefix = protocol.TOKEN_SUBPROTOCOL
        offered = [p for p in self.scope.get("subprotocols", ()) if p.startswith(prefix)]
        token = offered[-1][len(prefix) :] if offered else (query.get("token") or [None])[-1]
        if token:
            if self.rt.secret is None:
                self._refusal = "realtime tokens are not accepted here"
                return protocol.UNAUTHENTICATED
            try:
                return tokens.verify(self.rt.secret, token)
            except tokens.InvalidToken as exc:
                self._refusal = str(exc)
                return protocol.UNAUTHENTICATED
        found = await asyncio.to_thread(type(self).session_grant, self.scope)
        if isinstance(found, Grant):
            return found
        self._refusal = "a cross-origin page" if found else "a realtime token or a console session is needed"
        return found or protocol.UNAUTHENTICATED

    async def disconnect(self, code: int) -> None:
        if self not in self.hub.connections:
            return
        self.hub.connections.discard(self)
        metrics.CONNECTIONS.dec()
        metrics.CLOSED.labels(_CLOSE_REASONS.get(self.closing or 0, "client")).inc()
        self.outbox.clear()
        for room in list(self.rooms) + list(self.recovering):
            self.hub.leave(self, room)
        for room in list(self.present):
            with contextlib.suppress(Exception):  # Redis away: the entry expires in 2 heartbeats
                await self._leave_presence(room)

    # frames from the client

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.heard = time.monotonic()
        if self.closing is not None:
            return
        if text_data is None:
            return self._refuse(FrameError("invalid_frame", "frames are JSON text, not binary"))
        size = len(text_data) if text_data.isascii() else len(text_data.encode())
        if size > self.settings.frame_max_bytes:
            cap = self.settings.frame_max_bytes
            return self._refuse(FrameError("too_large", f"the frame is {size} bytes, over the cap of {cap}"))
        try:
            frame = protocol.parse(text_data)
        except FrameError as exc:
            return self._refuse(exc)
        if not self._take_token():
            rate = self.settings.rate_per_s
            return self._refuse(FrameError("rate_limited", f"over {rate:g} frames a second", None, frame.id))
        try:
            await _ROUTES[frame.type](self, frame)
        except FrameError as exc:
            self._refuse(exc)
        except Rejected as exc:
            error = exc.errors[0] if exc.errors else {}
            code = "too_large" if isinstance(exc, TooLarge) else "invalid_data"
            self._refuse(FrameError(code, str(exc), error.get("field"), frame.id))
        # redis-py's errors (a refused connection included) are no OSError: without them a
        # Redis outage ended the socket (1006) instead of answering `unavailable`.
        except (OSError, ConnectionError, TimeoutError, RedisError) as exc:
            self._send(
                protocol.error_frame(
                    FrameError("unavailable", f"try again: {type(exc).__name__}", None, frame.id)
                )
            )

    def _take_token(self) -> bool:
        now = time.monotonic()
        s = self.settings
        self.tokens_left = min(float(s.rate_burst), self.tokens_left + (now - self.refilled) * s.rate_per_s)
        self.refilled = now
        if self.tokens_left < 1:
            return False
        self.tokens_left -= 1
        return True

    def _refuse(self, error: FrameError) -> None:
        metrics.REFUSED.labels(error.code).inc()
        self._send(protocol.error_frame(error))
        now = time.monotonic()
        self.refusals.append(now)
        while self.refusals and self.refusals[0] < now - 60:
            self.refusals.popleft()
        if len(self.refusals) > self.settings.abuse_limit:
            self.expire(protocol.ABUSE, f"more than {self.settings.abuse_limit} refused frames in a minute")

    async def _subscribe(self, frame: Frame) -> None:
        room = _room(frame)
        if not self.grant.may_join(room):
            raise FrameError("forbidden", f"this token may not join {room!r}", "room", frame.id)
        if room in self.rooms or room in self.recovering:
            raise FrameError("already_subscribed", f"already in {room!r}", "room", frame.id)
        if len(self.rooms) + len(self.recovering) >= self.settings.max_subscriptions:
            cap = self.settings.max_subscriptions
            raise FrameError(
                "too_many_subscriptions", f"at most {cap} rooms per connection", "room", frame.id
            )
        self.recovering[room] = []  # what the hub pushes while history is read waits here
        try:
            start = await self.hub.join(self, room)
            missed = (
                []
                if frame.since is None
                else await self.rt.rooms.since(room, frame.since, self.settings.history_count)
            )
            # A ``since`` past this process's feed: the feed lags the store (the client read
            # further through another server), or, past the store's sequence too, the room
            # started over (a memory server restarted): then go live from the room's sequence,
            # or every message up to the old ``since`` would be held back as a repeat.
            ahead = frame.since is not None and frame.since > start
            reset = ahead and frame.since > await self.rt.rooms.last_seq(room)
        except BaseException:
            self.recovering.pop(room, None)
            self.hub.leave(self, room)
            raise
        last = start if frame.since is None or reset else frame.since
        reply: dict[str, Any] = {"room": room, "seq": start}
        if frame.since is not None:
            caught_up = start <= frame.since and not reset
            reply["recovered"] = missed[0].seq == frame.since + 1 if missed else caught_up
            reply["missed"] = len(missed)
        self._send(protocol.reply("subscribed", frame.id, **reply))
        for m in missed:
            self._send(protocol.message_frame(room, m.seq, m.data, m.sender, m.ts), m.ts)
            last = m.seq
        for seq, text, ts in self.recovering.pop(room, []):
            if seq > last:
                self._send(text, ts)
                last = seq
        self.rooms[room] = last
        if await self.rt.rooms.enter(
            room, self.conn_id, self.user, time.time() + 2 * self.settings.heartbeat_s
        ):
            self.present.add(room)
            await self.rt.announce(room, "join", self.conn_id, self.user)

    async def _unsubscribe(self, frame: Frame) -> None:
        room = _room(frame)
        if room not in self.rooms:
            raise FrameError("not_subscribed", f"not in {room!r}", "room", frame.id)
        del self.rooms[room]
        self.hub.leave(self, room)
        self._send(protocol.reply("unsubscribed", frame.id, room=room))
        await self._leave_presence(room)

    async def _leave_presence(self, room: str) -> None:
        if room in self.present:
            self.present.discard(room)
            if await self.rt.rooms.leave(room, self.conn_id, self.user):
                await self.rt.announce(room, "leave", self.conn_id, self.user)

    async def _publish(self, frame: Frame) -> None:
        room = _room(frame)
        if not self.grant.may_publish(room):
            raise FrameError("forbidden", f"this token may not publish to {room!r}", "room", frame.id)
        seq = await self.rt.publish_checked(room, self.rt.check(room, frame.data), self.user)
        self._send(protocol.reply("published", frame.id, room=room, seq=seq))

    async def _presence(self, frame: Frame) -> None:
        room = _room(frame)
        if not self.grant.may_join(room):
            raise FrameError("forbidden", f"this token may not join {room!r}", "room", frame.id)
        members = (await self.rt.rooms.present(room))[:MAX_PRESENCE_LISTED]
        listed = [{"user": user, "client": conn} for conn, user in members]
        self._send(protocol.reply("presence", frame.id, room=room, members=listed))

    async def _history(self, frame: Frame) -> None:
        room = _room(frame)
        if not self.grant.may_join(room):
            raise FrameError("forbidden", f"this token may not join {room!r}", "room", frame.id)
        limit = min(frame.limit or 100, protocol.HISTORY_LIMIT)
        messages = await self.rt.history(room, frame.since or 0, limit)
        self._send(protocol.reply("history", frame.id, room=room, messages=messages))

    async def _ping(self, frame: Frame) -> None:
        self._send(protocol.reply("pong", frame.id))

    # frames to the client

    def push(self, room: str, seq: int, frame: str, ts: float) -> None:
        """A room message from the hub (in order, once each)."""
        waiting = self.recovering.get(room)
        if waiting is not None:
            waiting.append((seq, frame, ts))
            if len(waiting) > self.settings.send_queue:
                self._too_slow()
            return
        last = self.rooms.get(room)
        if last is not None and seq > last:
            self.rooms[room] = seq
            self._send(frame, ts)

    def push_event(self, frame: str) -> None:
        self._send(frame)

    def _send(self, frame: str, ts: float | None = None) -> None:
        if self.closing is not None:
            return
        if len(self.outbox) >= self.settings.send_queue:
            self._too_slow()
            return
        self.outbox.append((frame, ts))
        self._wake()

    def _too_slow(self) -> None:
        metrics.DROPPED.labels("too_slow").inc(len(self.outbox))
        self.outbox.clear()
        cap = self.settings.send_queue
        self.expire(protocol.TOO_SLOW, f"too slow: {cap} frames waited for the client to read")

    def expire(self, code: int, reason: str) -> None:
        """Close after what is queued (at once for a client too slow: its queue is dropped)."""
        if self.closing is not None:
            return
        self.closing = code
        self.outbox.append((None, reason))
        self._wake()

    def _wake(self) -> None:
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        try:
            while self.outbox:
                frame, extra = self.outbox.popleft()
                if frame is None:
                    await self.close(code=self.closing, reason=extra)
                    return
                await self.send(text_data=frame)
                if extra is not None:
                    metrics.DELIVERY.observe(time.time() - extra)
        except Exception:  # noqa: BLE001 - the client went away mid-write: disconnect() cleans up
            self.outbox.clear()


_ROUTES = {
    "subscribe": RealtimeConsumer._subscribe,
    "unsubscribe": RealtimeConsumer._unsubscribe,
    "publish": RealtimeConsumer._publish,
    "presence": RealtimeConsumer._presence,
    "history": RealtimeConsumer._history,
    "ping": RealtimeConsumer._ping,
}


def _room(frame: Frame) -> str:
    assert frame.room is not None  # parse() requires a room on every type but ping
    return frame.room


class Endpoint:
    """The ASGI endpoint of `/ws/rt` (a callable object, so Starlette passes the raw scope)."""

    def __init__(self, session_grant: SessionGrant) -> None:
        consumer: Any = type(
            "BoundRealtimeConsumer", (RealtimeConsumer,), {"session_grant": staticmethod(session_grant)}
        )
        self.app = consumer.as_asgi()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        await self.app(scope, receive, send)
