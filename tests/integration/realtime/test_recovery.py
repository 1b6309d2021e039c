"""Recovery against real `coreplane serve` processes on the Redis layer: a client that was
away reconnects with ``since`` and gets what it missed in order, then live, with no gap and
no repeat across the seam, while messages keep being published during its resubscribe; on
the same server and on another one behind the same Redis."""

from __future__ import annotations

import asyncio
import time

from tests.support.realtime import Client, mint, room, rt_serve, ws_url
from tests.support.realtime_load import ApiPublisher, assert_consecutive, seqs
from tests.support.serve import ControlPlane

SEEN = 5  # messages the client gets before it goes away
MISSED = 100  # published while it is away
LIVE = 100  # published by a concurrent task while it resubscribes and after
SEAM_HEAD_START = 5  # live publishes done before the resubscribe is sent


async def _resume(away: ControlPlane, back: ControlPlane, publishing: ControlPlane, name: str) -> dict:
    """A client on ``away`` sees SEEN messages and leaves; MISSED are published; it comes back
    on ``back`` with ``since`` while LIVE more are published through ``publishing``. What it
    got, checked against what was published."""
    publisher = ApiPublisher(publishing, name)
    first = await Client.open(ws_url(away, mint(away, "returning", [name])))
    try:
        assert (await first.call("subscribe", name))["seq"] == 0
        await publisher.publish(SEEN, "seen")
        last = max(seqs(await first.messages(name, SEEN)))
        await first.close()
        await publisher.publish(MISSED, "missed")

        again = await Client.open(ws_url(back, mint(back, "returning", [name])))
        try:
            live = asyncio.create_task(publisher.publish(LIVE, "live"))
            while len(publisher.sent) < SEEN + MISSED + SEAM_HEAD_START and not live.done():
                await asyncio.sleep(0.005)  # until the live publisher is under way
            started = time.monotonic()
            reply = await again.call("subscribe", name, since=last)
            await live
            got = await again.messages(name, SEEN + MISSED + LIVE - last, timeout=60)
            seam_s = time.monotonic() - started
        finally:
            await again.close()
    finally:
        await publisher.close()
    assert reply["type"] == "subscribed", reply
    assert reply["recovered"] is True, reply
    assert reply["missed"] >= MISSED, reply
    assert reply["missed"] < MISSED + LIVE, f"nothing came live after the resubscribe: {reply}"
    assert_consecutive(seqs(got), last + 1, "after the resume")
    assert [f["data"] for f in got] == [publisher.sent[s] for s in seqs(got)]
    assert max(seqs(got)) == max(publisher.sent)
    return {"last": last, "missed": reply["missed"], "got": len(got), "seam_s": seam_s}


def test_a_client_resumes_with_since_on_the_same_server() -> None:
    with rt_serve() as cp:
        figures = asyncio.run(_resume(cp, cp, cp, room("recover")))
    print(f"\nresume on the same server: {figures}")
    assert figures["got"] == MISSED + LIVE


def test_a_client_resumes_with_since_on_another_server_behind_the_same_redis() -> None:
    # Same store: the second server shares the session secret, so tokens open both.
    with rt_serve() as one, rt_serve(one.env["COREPLANE_DATABASE_URL"]) as two:
        # Away from server 1, back on server 2, while server 1 keeps publishing: the live
        # messages reach server 2 through the Redis layer.
        figures = asyncio.run(_resume(one, two, one, room("recover-across")))
    print(f"\nresume on another server: {figures}")
    assert figures["got"] == MISSED + LIVE
