"""Presence against a real `coreplane serve` on the Redis layer, with real clients: a member
that vanishes without closing (kill -9, SIGSTOP) is gone from presence within 2 heartbeats,
and the others get its leave event. A server kill -9: tests/chaos/test_realtime_kill.py."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from tests.support.realtime import Client, mint, room, rt_serve, ws_url
from tests.support.realtime_load import ChildMember, keep_alive, off_presence, presence_users
from tests.support.serve import ControlPlane

HEARTBEAT_S = 1.0
# The machine has 2 cores shared with other engineers' tests and servers: a process may wait
# a few hundred ms for a core, the maintenance round that closes or sweeps runs every quarter
# heartbeat, and the presence poll adds its period and an HTTP round trip. One second covers
# that; a member that lingered a whole heartbeat too long still fails.
MARGIN_S = 1.0
SETTINGS = {"realtime__heartbeat_s": str(HEARTBEAT_S)}


def test_a_member_killed_leaves_presence_and_the_room_hears_it() -> None:
    with rt_serve(**SETTINGS) as cp:
        leave_s, gone_s = asyncio.run(_vanish(cp, room("presence-kill"), stop=False))
    print(f"\nkill -9 of a member: leave event after {leave_s:.3f} s, off presence after {gone_s:.3f} s")
    assert leave_s <= 2 * HEARTBEAT_S + MARGIN_S
    assert gone_s <= 2 * HEARTBEAT_S + MARGIN_S


def test_a_member_that_hangs_leaves_presence_within_two_heartbeats_of_its_last_ping() -> None:
    with rt_serve(**SETTINGS) as cp:
        leave_s, gone_s = asyncio.run(_vanish(cp, room("presence-stop"), stop=True))
    print(
        f"\nSIGSTOP of a member: leave event {leave_s:.3f} s, off presence {gone_s:.3f} s after its last ping"
    )
    # The server closes it as idle 1.5 heartbeats after it last heard from it (checked every
    # quarter heartbeat), and the close takes it off presence.
    assert leave_s <= 2 * HEARTBEAT_S + MARGIN_S
    assert gone_s <= 2 * HEARTBEAT_S + MARGIN_S


async def _vanish(cp: ControlPlane, name: str, *, stop: bool) -> tuple[float, float]:
    """A watcher and a member in a child process share ``name``; the member is killed (or
    stopped). Seconds from the kill (from its last ping, when stopped) to the watcher's leave
    event and to presence without it."""
    watcher = await Client.open(ws_url(cp, mint(cp, "watcher", [name])))
    pinger = asyncio.create_task(keep_alive([watcher], HEARTBEAT_S / 2))
    # The watcher is in the room before the member joins, or the member's join event can go
    # out before the watcher is in the group to hear it.
    assert (await watcher.call("subscribe", name))["type"] == "subscribed"
    child = await asyncio.to_thread(ChildMember, ws_url(cp, mint(cp, "vanishing", [name])), name)
    try:
        joined = await watcher.expect("join", user="vanishing")
        assert await asyncio.to_thread(presence_users, cp, name) == {"watcher", "vanishing"}
        os.kill(child.process.pid, signal.SIGSTOP if stop else signal.SIGKILL)
        start_wall, start = time.time(), time.monotonic()
        left, gone_at = await asyncio.gather(
            watcher.expect("leave", timeout=15, user="vanishing"),
            asyncio.to_thread(off_presence, cp, name, "vanishing"),
        )
        leave_at = time.monotonic()
        assert left["client"] == joined["client"]
        if stop:  # measured from when the server last heard from it
            offset = start_wall - child.last_ping()
            assert 0 <= offset < 1.5 * HEARTBEAT_S, f"the member last pinged {offset:.3f} s before the stop"
            return leave_at - start + offset, gone_at - start + offset
        return leave_at - start, gone_at - start
    finally:
        child.end()
        pinger.cancel()
        await watcher.close()
