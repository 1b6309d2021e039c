"""The hub's ordering on the real in-memory channel layer (no server): each room message
reaches a member once and in order, a message the layer lost is read back from history
before the next one, a repeat is dropped, and a lost last message comes with the next
maintenance round. The members are plain recorders (our own Member type, not a backend)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from channels.layers import InMemoryChannelLayer
from prometheus_client import REGISTRY

from controlplane.realtime import protocol
from controlplane.realtime.hub import Hub
from controlplane.realtime.rooms import MemoryRooms
from controlplane.realtime.runtime import Realtime, group
from controlplane.settings import RealtimeSettings

WAIT_S = 20.0  # generous: a loaded CI machine


@dataclass(eq=False)
class Recorder:
    """A hub member that keeps what it was given."""

    conn_id: str
    user: str = "ann"
    heard: float = field(default_factory=time.monotonic)
    present: set[str] = field(default_factory=set)
    seqs: list[int] = field(default_factory=list)
    frames: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)

    def push(self, room: str, seq: int, frame: str, ts: float) -> None:
        self.seqs.append(seq)
        self.frames.append(json.loads(frame))

    def push_event(self, frame: str) -> None:
        self.events.append(json.loads(frame))

    def expire(self, code: int, reason: str) -> None:
        self.closed.append(code)


async def until(what: str, check: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    """tests/support/timing.until for a running event loop (it must not block the loop)."""
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout_s:g} s for {what}")
        await asyncio.sleep(0.01)
    return found


def with_hub(test: Callable[[Hub], Awaitable[None]], **settings: Any) -> None:
    """Run ``test`` with a started hub on a fresh in-memory layer and memory rooms."""

    async def go() -> None:
        rt = Realtime(RealtimeSettings(**settings), MemoryRooms(settings.get("history_count", 1000), 3600))
        rt._layer = InMemoryChannelLayer()
        hub = Hub(rt)
        await hub.start()
        try:
            await test(hub)
        finally:
            await hub.stop()

    asyncio.run(go())


def _gap_fills() -> float:
    return REGISTRY.get_sample_value("coreplane_rt_gap_fills_total") or 0.0


QUIET = {"heartbeat_s": 300}  # no maintenance round during the test: only the layer delivers


async def _lost(hub: Hub, room: str, data: Any) -> int:
    """A message stored but never carried by the layer (as when channels_redis drops one)."""
    return await hub.rt.rooms.append(room, protocol.dumps(data), "ann", time.time())


def test_published_messages_reach_every_member_once_in_order():
    async def test(hub: Hub) -> None:
        a, b = Recorder("a"), Recorder("b")
        assert await hub.join(a, "chat:1") == 0
        assert await hub.join(b, "chat:1") == 0
        for i in range(50):
            await hub.rt.publish("chat:1", {"i": i}, sender="ann")
        await until("50 messages to b", lambda: len(b.seqs) >= 50)
        await hub.rt.publish("chat:1", {"i": 50})  # a barrier: nothing after 50 arrives twice
        await until("the barrier", lambda: len(a.seqs) >= 51 and len(b.seqs) >= 51)
        assert a.seqs == b.seqs == list(range(1, 52))
        assert [f["data"]["i"] for f in a.frames] == list(range(51))
        assert a.frames[0]["from"] == "ann" and a.frames[0]["room"] == "chat:1"

    with_hub(test, **QUIET)


def test_a_member_joins_at_the_room_sequence_and_gets_only_what_follows():
    async def test(hub: Hub) -> None:
        for i in range(3):
            await hub.rt.publish("news", i)
        late = Recorder("late")
        assert await hub.join(late, "news") == 3
        await hub.rt.publish("news", 3)
        await until("seq 4", lambda: late.seqs)
        assert late.seqs == [4]

    with_hub(test, **QUIET)


def test_a_message_the_layer_lost_is_filled_from_history_before_the_next():
    async def test(hub: Hub) -> None:
        m = Recorder("m")
        await hub.join(m, "chat:2")
        await hub.rt.publish("chat:2", "one")
        fills = _gap_fills()
        assert await _lost(hub, "chat:2", "two") == 2
        assert await _lost(hub, "chat:2", "three") == 3
        await hub.rt.publish("chat:2", "four")
        await until("four", lambda: len(m.seqs) >= 4)
        assert m.seqs == [1, 2, 3, 4]
        assert [f["data"] for f in m.frames] == ["one", "two", "three", "four"]
        assert _gap_fills() - fills == 2

    with_hub(test, **QUIET)


def test_a_repeat_and_a_reordered_message_are_delivered_once():
    async def test(hub: Hub) -> None:
        m = Recorder("m")
        await hub.join(m, "chat:3")
        await hub.rt.publish("chat:3", "one")
        await until("one", lambda: m.seqs)
        # seq 2 and 3 stored; the layer brings 3 first, then 2 late, then 1 again
        await _lost(hub, "chat:3", "two")
        await _lost(hub, "chat:3", "three")
        for seq in (3, 2, 1):
            frame = protocol.message_frame("chat:3", seq, protocol.dumps(f"copy {seq}"), None, time.time())
            message = {"type": "rt.message", "room": "chat:3", "seq": seq, "ts": time.time(), "frame": frame}
            await hub.rt.layer.group_send(group("chat:3"), message)
        await hub.rt.publish("chat:3", "four")  # the layer keeps one channel's order: a barrier
        await until("four", lambda: 4 in m.seqs)
        assert m.seqs == [1, 2, 3, 4]
        assert [f["data"] for f in m.frames] == ["one", "two", "copy 3", "four"]  # 2 from history

    with_hub(test, **QUIET)


def test_a_gap_past_the_history_delivers_what_history_still_has_in_order():
    async def test(hub: Hub) -> None:
        m = Recorder("m")
        await hub.join(m, "r")
        for i in range(5):
            await _lost(hub, "r", i)
        await hub.rt.publish("r", 5)  # seq 6: history keeps 5 and 6, the hub last saw 0
        await until("six", lambda: 6 in m.seqs)
        assert m.seqs == [5, 6]

    with_hub(test, history_count=2, heartbeat_s=300)


def test_a_lost_last_message_arrives_with_the_next_maintenance_round():
    async def test(hub: Hub) -> None:
        m = Recorder("m")
        await hub.join(m, "tail")
        await hub.rt.publish("tail", "one")
        await until("one", lambda: m.seqs)
        await _lost(hub, "tail", "two")  # nothing comes after it on the layer
        await until("the tail check", lambda: len(m.seqs) >= 2, timeout_s=WAIT_S)
        assert m.seqs == [1, 2] and m.frames[1]["data"] == "two"

    with_hub(test, heartbeat_s=0.4)


def test_events_go_to_every_member_of_the_room_only():
    async def test(hub: Hub) -> None:
        a, b, other = Recorder("a"), Recorder("b"), Recorder("o")
        await hub.join(a, "x")
        await hub.join(b, "x")
        await hub.join(other, "y")
        await hub.rt.announce("x", "join", "c9", "zed")
        await until("the join", lambda: a.events and b.events)
        assert a.events[0]["type"] == "join" and a.events[0]["user"] == "zed"
        hub.leave(b, "x")
        await hub.rt.publish("x", 1)
        await hub.rt.publish("y", 1)
        await until("both rooms' messages", lambda: a.seqs and other.seqs)
        assert (b.seqs, other.events) == ([], [])

    with_hub(test, **QUIET)


def test_maintenance_closes_the_silent_and_announces_expired_presence():
    async def test(hub: Hub) -> None:
        quiet, lively = Recorder("q"), Recorder("l")
        quiet.heard = time.monotonic() - 60
        hub.connections |= {quiet, lively}
        await hub.join(lively, "p")
        await hub.rt.rooms.enter("p", "dead", "ghost", time.time() - 1)  # a dead server's entry
        await until("the leave", lambda: lively.events)
        assert lively.events[0]["type"] == "leave" and lively.events[0]["user"] == "ghost"
        await until("the idle close", lambda: quiet.closed)
        assert quiet.closed[0] == protocol.IDLE

    with_hub(test, heartbeat_s=0.4)


def test_drain_tells_every_connection_to_reconnect():
    async def test(hub: Hub) -> None:
        a = Recorder("a")
        hub.connections.add(a)
        hub.drain()
        assert hub.draining and a.events == [{"type": "reconnect", "reason": "the server is restarting"}]
        assert a.closed == [protocol.RESTART]

    with_hub(test, **QUIET)
