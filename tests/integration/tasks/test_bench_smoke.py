"""`make bench BENCH=tasks` end to end on tiny counts (real RabbitMQ, Redis, PostgreSQL and
worker processes on both sides), so the benchmark keeps working between its runs."""

from __future__ import annotations

from bench import tasks


def test_the_tasks_bench_measures_both_sides_and_the_capture(services, tmp_path):
    found = tasks.latency(services, tmp_path, rate=20, seconds=1, blocks=2)
    assert {side: len(ms) for side, ms in found.items()} == {"coreplane": 20, "bare": 20}
    assert all(0 < ms < 10_000 for side in found.values() for ms in side), found
    latency = tasks.latency_result(found, rate=20, blocks=2)
    assert latency.name == "task_latency_p99_ms" and latency.ratio == round(
        latency.ours / latency.baseline, 3
    )

    drains = tasks.throughput(services, tmp_path, count=300, rounds=1)
    assert all(d.per_s > 0 and d.cpu_ms >= 0 for side in drains.values() for d in side), drains
    throughput = tasks.throughput_result(drains, count=300)
    assert throughput.ours == round(drains["coreplane"][0].per_s, 1)
    assert throughput.baseline == round(drains["bare"][0].per_s, 1)

    capture = tasks.capture_lag(services, tmp_path, rate=20, seconds=1, stall_s=3)
    # Every task sent is either seen finished in the store or reported as never shown so.
    assert capture.sent == 20 and len(capture.lags_ms) + sum(capture.stuck.values()) == 20
    assert capture.lags_ms and all(0 <= ms < 60_000 for ms in capture.lags_ms), capture
    lag = tasks.lag_result(capture, rate=20)
    # The ratio is the unrounded p99 against the goal (247.54 ms gives 0.248, where the
    # shown 247.5 would give 0.247).
    p99 = tasks._quantile(capture.lags_ms, 99)
    assert lag.baseline is None and lag.ratio == round(p99 / tasks.LAG_GOAL_MS, 3), lag
    assert lag.ours == round(p99, 1)
