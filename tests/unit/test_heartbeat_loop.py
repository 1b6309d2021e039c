"""The heartbeat loop's schedule, against a port where nothing listens (a real refusal)."""

from agents.client import ControlPlaneClient
from agents.runtime import HeartbeatLoop


def _loop(interval: float = 10.0) -> HeartbeatLoop:
    client = ControlPlaneClient("http://127.0.0.1:1", "token", timeout_s=1)
    return HeartbeatLoop(client, agent="unit", interval_s=interval)


def test_failures_back_off_exponentially_up_to_a_cap():
    loop = _loop()
    assert 9.0 <= loop.delay() <= 11.0
    assert loop.run_once() is False
    assert loop.failures == 1
    assert 18.0 <= loop.delay() <= 22.0
    for _ in range(10):
        loop.run_once()
    assert loop.failures == 11
    assert 270.0 <= loop.delay() <= 330.0  # capped at 300 s, ±10 % jitter


def test_start_runs_exactly_the_requested_iterations():
    loop = _loop(interval=0.01)
    loop.start(loops=3)
    assert loop.failures == 3
