"""1,000 members in one room on one real `coreplane serve` on the Redis layer: every member
gets every message, counted. The bare Channels baseline (a consumer doing group_send on the
same channels_redis layer, tests/support/realtime_bare.py) is run and counted in the same
test; it may drop (channels_redis caps each channel's queue), so its count is only reported."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import websockets

from tests.support.realtime import Client, mint, redis_url, room, rt_serve, ws_url
from tests.support.realtime_load import bare_serve, close_all, open_clients, raise_fd_limit
from tests.support.serve import ControlPlane

MEMBERS = 1000
MESSAGES = 10
CONNECT_CONCURRENCY = 50
DELIVERY_LIMIT_S = 60.0  # coreplane: every message to every member by then, or the test fails
JOINS_LIMIT_S = 60.0  # the join events of the first subscribes have gone out by then
# Rooms past realtime.presence_events_max (100) members announce no joins: about 100²/2
# join frames in all, where announcing every one would cost 1,000²/2 (half a million).
JOINS_MAX = 3 * 100 * 100
JOINS_QUIET_S = 3.0  # ... or none came for this long
BARE_QUIET_S = 3.0  # the baseline: counting stops after this long without a new frame
SETTINGS = {"realtime__heartbeat_s": "300"}  # the members send nothing after subscribing: no idle close
MESSAGE_PREFIX = '{"type":"message"'  # protocol.message_frame: a room message starts so


@dataclass(eq=False)
class Member:
    """One socket's reader: the sequences (coreplane) or texts (bare) of the messages it got."""

    ws: websockets.ClientConnection
    got: list = field(default_factory=list)
    subscribed: bool = False
    other: int = 0  # frames that are neither (presence events, replies)
    closed: str | None = None

    async def read(self, bare: bool) -> None:
        try:
            async for text in self.ws:
                if bare:
                    self.got.append(text)
                elif text.startswith(MESSAGE_PREFIX):
                    self.got.append(json.loads(text)["seq"])
                elif text.startswith('{"type":"subscribed"'):
                    self.subscribed = True
                else:
                    self.other += 1
        except websockets.ConnectionClosed as exc:
            self.closed = repr(exc)
        else:
            self.closed = f"closed {self.ws.close_code}"


def test_a_thousand_members_get_every_message_and_the_bare_layer_is_counted_alongside() -> None:
    raise_fd_limit(4 * MEMBERS + 256)
    redis = redis_url()
    with rt_serve(**SETTINGS) as cp:
        ours = asyncio.run(_coreplane(cp, room("fanout")))
    with bare_serve(redis) as bare:
        theirs = asyncio.run(_bare(bare, room("fanout-bare")))
    expected = MEMBERS * MESSAGES
    print(
        f"\nfan-out to {MEMBERS} members x {MESSAGES} messages = {expected}: coreplane delivered "
        f"{ours['delivered']} in {ours['deliver_s']:.2f} s (connect {ours['connect_s']:.1f} s, "
        f"subscribe {ours['subscribe_s']:.1f} s, then {ours['joins']} join events in "
        f"{ours['joins_s']:.1f} s); "
        f"bare Channels group_send delivered {theirs['delivered']} "
        f"(connect {theirs['connect_s']:.1f} s, counted for {theirs['deliver_s']:.2f} s)"
    )
    assert ours["delivered"] == expected
    assert ours["complete_members"] == MEMBERS
    # The baseline's count is measured, not judged (channels_redis may drop); that it got
    # anything at all shows it ran.
    assert theirs["delivered"] > 0


async def _open_members(urls: list[str], bare: bool) -> tuple[list[Member], list[asyncio.Task], float]:
    started = time.monotonic()
    clients = await open_clients(urls, concurrency=CONNECT_CONCURRENCY, compression=None)
    members = [Member(c.ws) for c in clients]
    readers = [asyncio.create_task(m.read(bare)) for m in members]
    return members, readers, time.monotonic() - started


async def _count_until(count: Callable[[], int], target: int | None, limit_s: float, quiet_s: float) -> int:
    """``count()`` once it reaches ``target``, or has not moved for ``quiet_s`` since it first
    moved, or ``limit_s`` passed; whichever comes first."""
    started = seen_at = time.monotonic()
    seen = 0
    while True:
        now = count()
        if now != seen:
            seen, seen_at = now, time.monotonic()
        if (
            (target is not None and now >= target)
            or (now > 0 and time.monotonic() - seen_at > quiet_s)
            or time.monotonic() - started > limit_s
        ):
            return now
        await asyncio.sleep(0.05)


def _messages(members: list[Member]) -> Callable[[], int]:
    return lambda: sum(len(m.got) for m in members)


async def _coreplane(cp: ControlPlane, name: str) -> dict:
    token = await asyncio.to_thread(mint, cp, "member", [name])
    members, readers, connect_s = await _open_members([ws_url(cp, token)] * MEMBERS, bare=False)
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {cp.token}"}, timeout=30)
    try:
        started = time.monotonic()
        for m in members:
            await m.ws.send(json.dumps({"type": "subscribe", "room": name, "id": 1}))
        deadline = time.monotonic() + DELIVERY_LIMIT_S
        while not all(m.subscribed or m.closed for m in members) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert all(m.subscribed for m in members), "not every member subscribed"
        subscribe_s = time.monotonic() - started
        # Messages are published once the join events have gone out, so the figure below is
        # the fan-out's.
        joins = await _count_until(lambda: sum(m.other for m in members), None, JOINS_LIMIT_S, JOINS_QUIET_S)
        assert joins <= JOINS_MAX, f"{joins} join events: rooms past presence_events_max should announce none"
        joins_s = time.monotonic() - started - subscribe_s
        started = time.monotonic()
        published = []
        for n in range(MESSAGES):
            answer = await http.post(
                f"{cp.url}/api/v1/realtime/rooms/{name}/messages", json={"data": {"n": n}}
            )
            assert answer.status_code == 201, answer.text
            published.append(answer.json()["seq"])
        # Quiet for as long as the limit: coreplane's count is waited for in full.
        delivered = await _count_until(
            _messages(members), MEMBERS * MESSAGES, DELIVERY_LIMIT_S, DELIVERY_LIMIT_S
        )
        deliver_s = time.monotonic() - started
        closed = [m.closed for m in members if m.closed]
        assert not closed, f"{len(closed)} members were closed, first: {closed[0]}"
        return {
            "delivered": delivered,
            "complete_members": sum(1 for m in members if m.got == published),
            "joins": joins,
            "joins_s": joins_s,
            "connect_s": connect_s,
            "subscribe_s": subscribe_s,
            "deliver_s": deliver_s,
        }
    finally:
        await http.aclose()
        for task in readers:
            task.cancel()
        await close_all([Client(m.ws) for m in members])


async def _bare(base: str, name: str) -> dict:
    url = f"{base}?room={name}"
    members, readers, connect_s = await _open_members([url] * MEMBERS, bare=True)
    sender = await websockets.connect(url, max_size=None, compression=None)
    try:
        started = time.monotonic()
        for n in range(MESSAGES):
            await sender.send(json.dumps({"n": n}))
        # The layer may drop, so there is no count to wait for: until none came for a while.
        delivered = await _count_until(_messages(members), MEMBERS * MESSAGES, DELIVERY_LIMIT_S, BARE_QUIET_S)
        return {
            "delivered": delivered,
            "connect_s": connect_s,
            "deliver_s": time.monotonic() - started,
        }
    finally:
        for task in readers:
            task.cancel()
        await sender.close()
        await close_all([Client(m.ws) for m in members])
