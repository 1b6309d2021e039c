"""A client that stops reading, on a real `coreplane serve` on the Redis layer: the server
closes it with 4409 (too slow) instead of queueing for it, the other member of the room gets
every message, and the server's memory stays far below what was published (measured)."""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time

import websockets

from tests.support.realtime import Client, mint, room, rt_serve, ws_url
from tests.support.realtime_load import (
    assert_consecutive,
    metric,
    rss_bytes,
    seqs,
    server_pid,
    small_receive_buffer,
)
from tests.support.serve import ControlPlane
from tests.support.timing import until

SEND_QUEUE = 100
MESSAGES = 1000
PAYLOAD_CHARS = 60_000  # under the default 64 KiB frame cap once wrapped in JSON
WARM_UP = 20  # messages both members read before RSS is first measured
WINDOW = 50  # publish frames in flight at once (the publisher reads its replies in between)
PUBLISH_LIMIT_S = 150.0  # the machine is shared: ~35 messages/s of 60 KB under load
# uvicorn pings every socket 20 s after it opened and fails it with 1011 when the pong has not
# come 20 s later; a client stuck past that would be closed for it, not for being slow. So the
# stuck client reads again once the publishing is over, or at the latest this long after it
# connected.
STUCK_AT_MOST_S = 30.0
SETTINGS = {
    "realtime__send_queue": str(SEND_QUEUE),
    "realtime__heartbeat_s": "300",  # nobody here pings: no idle close during the test
    "realtime__history_count": "100",  # 60 KB messages: keep the shared Redis small
    "realtime__rate_per_s": "100000",  # one publisher sends all of them
    "realtime__rate_burst": "100000",
}


class RssPeak:
    """The largest RSS of a process, sampled from a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.done = pid, rss_bytes(pid), threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return self.peak


def test_a_client_too_slow_is_closed_and_the_server_memory_stays_bounded() -> None:
    with rt_serve(**SETTINGS) as cp:
        figures = asyncio.run(_slow_client(cp, room("slow")))
    published = MESSAGES * PAYLOAD_CHARS
    growth = figures["rss_peak"] - figures["rss_before"]
    print(
        f"\nslow client: published {MESSAGES} x {PAYLOAD_CHARS} B = {published / 2**20:.1f} MiB in "
        f"{figures['publish_s']:.1f} s; server RSS {figures['rss_before'] / 2**20:.1f} MiB before, "
        f"peak {figures['rss_peak'] / 2**20:.1f} MiB, after {figures['rss_after'] / 2**20:.1f} MiB "
        f"(growth {growth / 2**20:.1f} MiB); the slow client read {figures['slow_read']} frames, "
        f"stuck {figures['stuck_s']:.1f} s, then close {figures['close_code']}; dropped "
        f"{figures['dropped']:.0f} frames; the fast member got {figures['fast_got']}"
    )
    assert figures["close_code"] == 4409
    assert figures["slow_read"] < MESSAGES
    assert figures["dropped"] >= 1
    assert figures["fast_got"] == MESSAGES
    # The server kept nothing for the stuck client beyond its queue and the socket buffers:
    # its growth is a small part of what went through it.
    assert growth < published / 4, f"RSS grew {growth} bytes for {published} published"


async def _slow_client(cp: ControlPlane, name: str) -> dict:
    pid = server_pid(cp)
    # No permessage-deflate: the bytes on the wire are the bytes published.
    fast = await Client.open(ws_url(cp, mint(cp, "fast", [name])), compression=None)
    publisher = await Client.open(ws_url(cp, mint(cp, "publisher", [name])), compression=None)
    # max_queue=1: past one frame unread the client stops reading its socket, whose receive
    # buffer is small; no keepalive pings from it (it would not read the pongs).
    url = ws_url(cp, mint(cp, "slow", [name]))
    slow = await Client.open(
        url, max_queue=1, ping_interval=None, compression=None, sock=small_receive_buffer(url)
    )
    connected = time.monotonic()
    peak: RssPeak | None = None
    try:
        for client in (fast, slow):
            assert (await client.call("subscribe", name))["type"] == "subscribed"
        await _publish(publisher, name, WARM_UP)
        for client in (fast, slow):
            assert_consecutive(seqs(await client.messages(name, WARM_UP)), 1, "warm-up")
        # The slow client reads nothing from here on, until the publishing is over.
        rss_before, peak = rss_bytes(pid), RssPeak(pid)
        stuck = time.monotonic()
        reading = asyncio.create_task(fast.messages(name, MESSAGES, timeout=PUBLISH_LIMIT_S))
        publishing = asyncio.create_task(_publish(publisher, name, MESSAGES))
        await asyncio.wait([publishing], timeout=max(0.0, STUCK_AT_MOST_S - (time.monotonic() - connected)))
        stuck_s = time.monotonic() - stuck
        slow_read, close_code = await _read_to_close(slow)
        await asyncio.wait_for(publishing, PUBLISH_LIMIT_S)
        publish_s = time.monotonic() - stuck
        fast_got = await reading
        rss_after, rss_peak = rss_bytes(pid), peak.stop()
        dropped = await asyncio.to_thread(metric, cp, "coreplane_rt_frames_dropped_total", reason="too_slow")
        await asyncio.to_thread(
            until,
            "the too-slow close on /metrics",
            lambda: metric(cp, "coreplane_rt_connections_closed_total", reason="too_slow") == 1,
            10,
        )
    finally:
        if peak is not None:
            peak.stop()
        await asyncio.gather(fast.close(), slow.close(), publisher.close(), return_exceptions=True)
    assert_consecutive(seqs(fast_got), WARM_UP + 1, "the fast member")
    return {
        "rss_before": rss_before,
        "rss_peak": rss_peak,
        "rss_after": rss_after,
        "publish_s": publish_s,
        "stuck_s": stuck_s,
        "fast_got": len(fast_got),
        "slow_read": slow_read,
        "close_code": close_code,
        "dropped": dropped,
    }


async def _publish(publisher: Client, name: str, count: int) -> None:
    """``count`` publish frames of PAYLOAD_CHARS, WINDOW at a time, each one acknowledged (the
    publisher is in no room: replies are all it gets)."""
    pad = base64.b64encode(os.urandom(PAYLOAD_CHARS * 3 // 4)).decode()  # incompressible
    for start in range(0, count, WINDOW):
        sent = [
            await publisher.send("publish", name, data={"n": n, "pad": pad})
            for n in range(start, min(count, start + WINDOW))
        ]
        replies = [await publisher.next(timeout=60) for _ in sent]
        assert [(r["type"], r["id"]) for r in replies] == [("published", i) for i in sent], replies[:3]


async def _read_to_close(client: Client) -> tuple[int, int | None]:
    """Frames the client reads until the server closes it, and the close code."""
    read = len(client.inbox)
    try:
        while True:
            await asyncio.wait_for(client.ws.recv(), 30)
            read += 1
    except websockets.ConnectionClosed as exc:
        return read, exc.rcvd.code if exc.rcvd else None
