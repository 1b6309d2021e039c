"""Graceful drain: a `coreplane serve` told to stop (SIGTERM) tells each `/ws/rt` client to
reconnect, closes it with 1012, and exits."""

from __future__ import annotations

import signal

from controlplane.realtime import protocol
from tests.support.realtime import mint, room
from tests.support.realtime_protocol import closed, open_in, rt_process, run

EXIT_S = 30


def test_sigterm_tells_every_client_to_reconnect_then_closes_1012():
    name = room("drain")
    with rt_process() as (cp, process):
        token = mint(cp, "dra", [name])

        async def scenario() -> list[tuple[int, str, list[dict]]]:
            clients = [await open_in(cp, token, name) for _ in range(3)]
            sent = await clients[0].call("publish", name, data={"before": "drain"})
            assert sent["type"] == "published", sent
            for client in clients:  # each has its copy before the stop, so the drain is what follows
                (got,) = await client.messages(name, 1)
                assert got["seq"] == sent["seq"]
            process.send_signal(signal.SIGTERM)
            ends = []
            for client in clients:
                code, reason = await closed(client, timeout=EXIT_S)
                ends.append((code, reason, client.inbox))
            return ends

        ends = run(scenario())
        process.wait(timeout=EXIT_S)

    for code, reason, frames in ends:
        assert code == protocol.RESTART, (code, reason, frames)
        told = [f for f in frames if f.get("type") == "reconnect"]
        assert len(told) == 1 and told[0]["reason"], frames
        assert frames[-1]["type"] == "reconnect", "reconnect is the last frame before the close"
    # uvicorn re-raises the signal once its shutdown is done, so -SIGTERM is a clean exit too.
    log = cp.log.read_text()
    assert process.returncode in (0, -signal.SIGTERM), f"serve exited {process.returncode}:\n{log[-2000:]}"
    assert "Application shutdown complete" in log, log[-2000:]
