"""Loop schedules: the heartbeat against a port where nothing listens (a real refusal)."""

from agents.client import ControlPlaneClient
from agents.runtime import HeartbeatLoop, backoff


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


def test_a_failing_target_backs_off_to_a_minute_at_most():
    assert 0.9 <= backoff(1.0, 0, cap_s=60) <= 1.1
    assert 3.6 <= backoff(1.0, 2, cap_s=60) <= 4.4
    assert 54 <= backoff(1.0, 50, cap_s=60) <= 66
    assert 108 <= backoff(120.0, 3, cap_s=60) <= 132  # never below the interval itself
