"""One process's side of every room: the feeds its connections are in.

    publish ─> store (seq) ─> layer group "rt.<room>" ─> each process's hub channel
                                                          └─> Feed(room): in order, no gap, no repeat
                                                               └─> every local member's send queue

A process joins a room's group once, whatever its number of members in it, and a message
is serialized once for all of them. A feed delivers sequences in order: one it already
passed is a repeat (dropped), one past the next is a gap, read back from the room's history
first (the layer lost or reordered something). A maintenance round every quarter heartbeat
closes silent connections, keeps presence alive, announces the leaves of members whose
process died, and checks each feed's tail against the store, so a message the layer lost
last arrives within a heartbeat too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter as Tally
from dataclasses import dataclass, field
from typing import Any, Protocol

from controlplane.realtime import metrics, protocol
from controlplane.realtime.runtime import Realtime, group

log = logging.getLogger("coreplane.realtime")

REJOIN_S = 600.0  # layer group memberships expire (channels_redis: a day); renewed this often


class Member(Protocol):
    conn_id: str
    user: str
    heard: float  # time.monotonic() of the last frame from the client
    present: set[str]  # rooms where it is in presence

    def push(self, room: str, seq: int, frame: str, ts: float) -> None: ...
    def push_event(self, frame: str) -> None: ...
    def expire(self, code: int, reason: str) -> None: ...


@dataclass(eq=False)
class Feed:
    room: str
    kind: str
    last: int = 0
    members: set[Member] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    early: list[dict] = field(default_factory=list)  # layer messages before ``last`` was read
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    empty_rounds: int = 0


class Hub:
    def __init__(self, rt: Realtime) -> None:
        self.rt = rt
        self.feeds: dict[str, Feed] = {}
        self.connections: set[Member] = set()
        self.channel: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._leaving: dict[str, asyncio.Task] = {}
        self.draining = False
        self._kinds: set[str] = set()  # presence kinds reported once, set to 0 when empty

    async def start(self) -> None:
        # The default prefix: channels_redis gives a process ONE receive loop (one lock) for
        # the "specific.<client>!" list every consumer's channel lives on; a channel under
        # another prefix would hold that lock through its own 5 s pops and starve the
        # console's live pages (they got a tick every few seconds, or none).
        self.channel = await self.rt.layer.new_channel()
        self._tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._maintain())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.rt.rooms.close()

    def drain(self) -> None:
        """Server shutting down: every client is told to reconnect, then closed with 1012."""
        self.draining = True
        for conn in list(self.connections):
            conn.push_event(protocol.dumps({"type": "reconnect", "reason": "the server is restarting"}))
            conn.expire(protocol.RESTART, "server restarting: reconnect")

    # joining and leaving

    async def join(self, conn: Member, room: str) -> int:
        """Add ``conn`` to the room's feed; the sequence it joins at (what came before is
        history, what comes after is pushed)."""
        feed = self.feeds.get(room)
        if feed is None:
            leaving = self._leaving.get(room)
            if leaving is not None:
                await asyncio.shield(leaving)  # the group discard goes first, never after our add
            feed = self.feeds.get(room)
        if feed is None:
            feed = self.feeds[room] = Feed(room, metrics.kind(room))
            try:
                await self.rt.layer.group_add(group(room), self.channel)
                feed.last = await self.rt.rooms.last_seq(room)
            except BaseException:
                del self.feeds[room]
                feed.ready.set()
                raise
            feed.ready.set()
            for message in feed.early:
                await self._message(feed, message)
            feed.early.clear()
        else:
            await feed.ready.wait()
            if self.feeds.get(room) is not feed:  # its start failed: try again as the first
                return await self.join(conn, room)
        feed.members.add(conn)
        feed.empty_rounds = 0
        return feed.last

    def leave(self, conn: Member, room: str) -> None:
        """The feed stays a few rounds after its last member left (``_maintain`` drops it): a
        room left and joined again does not churn the layer's group."""
        feed = self.feeds.get(room)
        if feed is not None:
            feed.members.discard(conn)

    async def _drop_empty(self) -> None:
        for room, feed in list(self.feeds.items()):
            if feed.members or not feed.ready.is_set():
                continue
            feed.empty_rounds += 1
            if feed.empty_rounds >= 8:
                del self.feeds[room]
                task = asyncio.create_task(self.rt.layer.group_discard(group(room), self.channel))
                self._leaving[room] = task
                task.add_done_callback(functools.partial(self._left, room))

    def _left(self, room: str, _task: asyncio.Task) -> None:
        self._leaving.pop(room, None)

    # messages from the layer

    async def _receive(self) -> None:
        layer = self.rt.layer
        while True:
            try:
                message = await layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: logged, tried again
                log.warning("realtime: the channel layer failed: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(1.0)
                continue
            feed = self.feeds.get(message.get("room", ""))
            if feed is None:
                continue
            if not feed.ready.is_set():
                feed.early.append(message)
                continue
            try:
                await self._message(feed, message)
            except Exception:
                log.exception("realtime: delivering to %s failed", feed.room)

    async def _message(self, feed: Feed, message: dict) -> None:
        if message["type"] == "rt.event":
            for conn in list(feed.members):
                conn.push_event(message["frame"])
            return
        seq = message["seq"]
        if seq <= feed.last:
            return  # a repeat (already read back from history)
        async with feed.lock:
            if seq > feed.last + 1:
                await self._fill(feed, seq - 1)
            if seq > feed.last:
                self._fan_out(feed, seq, message["frame"], message["ts"])

    async def _fill(self, feed: Feed, upto: int) -> None:
        """Read back from the room's history what the layer did not bring (under the lock)."""
        while feed.last < upto:
            stored = await self.rt.rooms.since(
                feed.room, feed.last, min(upto - feed.last, protocol.HISTORY_LIMIT)
            )
            stored = [m for m in stored if m.seq <= upto]
            if not stored:
                log.warning("realtime: %s lost %d..%d (no longer in history)", feed.room, feed.last + 1, upto)
                feed.last = upto
                return
            metrics.GAP_FILLS.inc(len(stored))
            for m in stored:
                self._fan_out(
                    feed, m.seq, protocol.message_frame(feed.room, m.seq, m.data, m.sender, m.ts), m.ts
                )

    def _fan_out(self, feed: Feed, seq: int, frame: str, ts: float) -> None:
        feed.last = seq
        members = list(feed.members)
        for conn in members:
            conn.push(feed.room, seq, frame, ts)
        metrics.FANOUT.observe(len(members))
        metrics.MESSAGES_OUT.labels(feed.kind).inc(len(members))

    # maintenance

    async def _maintain(self) -> None:
        hb = self.rt.settings.heartbeat_s
        next_beat = next_rejoin = 0.0
        while True:
            await asyncio.sleep(hb / 4)
            now = time.monotonic()
            for conn in list(self.connections):
                if now - conn.heard > 1.5 * hb:
                    conn.expire(protocol.IDLE, f"idle: nothing heard for {1.5 * hb:g} s (send a ping)")
            if now < next_beat:
                continue
            next_beat = now + hb
            try:
                await self._beat(now >= next_rejoin)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: logged, the next round tries again
                log.warning("realtime: heartbeat round failed: %s: %s", type(exc).__name__, exc)
            if now >= next_rejoin:
                next_rejoin = now + REJOIN_S

    async def _beat(self, rejoin: bool) -> None:
        rooms = self.rt.rooms
        hb = self.rt.settings.heartbeat_s
        entries = [(room, c.conn_id, c.user) for c in list(self.connections) for room in c.present]
        await rooms.refresh(entries, time.time() + 2 * hb)
        for room, conn, user in await rooms.expired(list(self.feeds)):
            await self.rt.announce(room, "leave", conn, user)
        names = list(self.feeds)
        for room, last in zip(names, await rooms.last_seqs(names), strict=True):
            feed = self.feeds.get(room)
            if feed is not None and feed.ready.is_set() and last > feed.last:
                async with feed.lock:
                    await self._fill(feed, last)
        if rejoin:
            for room in names:
                await self.rt.layer.group_add(group(room), self.channel)
        await self._drop_empty()
        kinds = Tally(metrics.kind(room) for room, _, _ in entries)
        self._kinds |= set(kinds)
        for name in self._kinds:
            metrics.PRESENCE.labels(name).set(kinds.get(name, 0))
        metrics.ROOMS.set(sum(1 for f in self.feeds.values() if f.members))

    def stats(self) -> dict[str, Any]:
        return {
            "connections": len(self.connections),
            "rooms": sum(1 for f in self.feeds.values() if f.members),
        }
