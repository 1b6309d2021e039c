"""Task analytics over seeded runs with known runtimes and waits (SQLite: the sampled
percentiles; tests/integration/tasks/test_history.py checks PostgreSQL's SQL ones)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from controlplane.errors import Rejected
from controlplane.tasks import analytics
from tests.support.task_runs import seed_runs

SINCE = datetime(2030, 1, 1)
UNTIL = SINCE + timedelta(hours=1)


def test_percentile_is_continuous_like_percentile_cont():
    assert analytics.percentile([1, 2, 3, 4], 0.5) == 2.5
    assert analytics.percentile(list(range(1, 101)), 0.95) == pytest.approx(95.05)
    assert analytics.percentile([], 0.5) is None


def test_summary_per_name_and_per_queue(sessions):
    with sessions.begin() as session:
        seed_runs(session, SINCE)
    with sessions() as session:
        by_name = {r["key"]: r for r in analytics.summary(session, by="name", since=SINCE, until=UNTIL)}
        by_queue = {r["key"]: r for r in analytics.summary(session, by="queue", since=SINCE, until=UNTIL)}
    add = by_name["jobs.add"]
    # runtimes 0.01 .. 1.00 s, waits 0.1 .. 10 s; 10 failed, 20 retried, over 3600 s
    assert (add["count"], add["succeeded"], add["failed"], add["retried"]) == (100, 90, 10, 20)
    assert add["runtime_p50"] == pytest.approx(0.505)
    assert add["runtime_p95"] == pytest.approx(0.9505)
    assert add["runtime_p99"] == pytest.approx(0.9901)
    assert add["wait_p95"] == pytest.approx(9.505)
    assert (add["failure_rate"], add["retry_rate"]) == (0.1, 0.2)
    assert add["throughput_per_s"] == pytest.approx(100 / 3600)
    assert by_name["jobs.slow"]["runtime_p50"] == pytest.approx(30.0)
    assert by_name["jobs.slow"]["wait_p50"] is None  # never received: no wait
    assert "jobs.out" not in by_name  # finished outside the window
    assert by_queue["celery"]["count"] == 100 and by_queue["slow"]["count"] == 3


def test_series_buckets_counts_and_p95(sessions):
    with sessions.begin() as session:
        seed_runs(session, SINCE)
    with sessions() as session:
        points = analytics.series(session, by="name", key="jobs.add", since=SINCE, until=UNTIL, step_s=600)
    assert len(points) == 6 and sum(p["count"] for p in points) == 100
    assert points[0]["at"] == SINCE and sum(p["failures"] for p in points) == 10
    assert all(p["runtime_p95"] is not None for p in points if p["count"])


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [(UNTIL, SINCE, "since"), (SINCE, SINCE + timedelta(days=8), "since")],
)
def test_bad_windows_are_refused(sessions, since, until, field):
    with sessions() as session, pytest.raises(Rejected) as refused:
        analytics.summary(session, by="name", since=since, until=until)
    assert refused.value.errors[0]["field"] == field


def test_too_many_buckets_are_refused(sessions):
    with sessions() as session, pytest.raises(Rejected):
        analytics.series(session, by="name", key="x", since=SINCE, until=UNTIL, step_s=1)
