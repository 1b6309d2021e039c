"""Task analytics over a window, per task name or per queue, from the task history.

Definitions (docs/tasks.md): a run counts in a window when it finished in it
(``finished_at``); runtime is Celery's own (task-succeeded's ``runtime``, else finished -
started); wait is due -> started of the last attempt (due: its send, or its ETA when later;
received when no send was heard); failure rate = failed /
finished; retry rate = runs retried at least once / finished; throughput = finished runs /
window seconds. Percentiles are continuous (linear interpolation between the two nearest
ranks, like PostgreSQL's ``percentile_cont``).

Where percentiles are computed: on PostgreSQL in SQL with ``percentile_cont`` (exact, over
every row, without moving rows to Python); on SQLite, which has no percentile function,
in Python over at most SAMPLE_MAX of the window's most recent runs per query (the embedded
store is for small installs). Counts and rates are exact SQL on both.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Float, case, cast, func, select
from sqlalchemy.orm import Session

from controlplane.errors import Rejected
from controlplane.store.models import TaskRun
from controlplane.tasks.history import FINISHED

By = Literal["name", "queue"]
MAX_WINDOW = timedelta(days=7)
MAX_KEYS = 500
MAX_BUCKETS = 1000
SAMPLE_MAX = 200_000
QUANTILES = (0.5, 0.95, 0.99)


def check_window(since: datetime, until: datetime, *, max_window: timedelta = MAX_WINDOW) -> None:
    if since >= until:
        raise Rejected.field("since must be before until", "since", "order")
    if until - since > max_window:
        raise Rejected.field(
            f"the window is {until - since}; at most {max_window} (narrow since/until)", "since", "too_long"
        )


def _column(by: str) -> Any:
    if by not in ("name", "queue"):
        raise Rejected.field(f"by must be name or queue, not {by!r}", "by", "unknown")
    return TaskRun.name if by == "name" else TaskRun.queue


def percentile(values: list[float], q: float) -> float | None:
    """Continuous percentile of ``values`` (sorted or not), as percentile_cont computes it."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _finished_in(since: datetime, until: datetime) -> list[Any]:
    return [TaskRun.state.in_(FINISHED), TaskRun.finished_at >= since, TaskRun.finished_at < until]


def _counts(session: Session, key: Any, since: datetime, until: datetime) -> list[Any]:
    def total(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))

    query = (
        select(
            key.label("key"),
            func.count().label("count"),
            total(TaskRun.state == "SUCCESS").label("succeeded"),
            total(TaskRun.state == "FAILURE").label("failed"),
            total(TaskRun.retries > 0).label("retried"),
        )
        .where(*_finished_in(since, until), key.is_not(None))
        .group_by(key)
        .order_by(func.count().desc(), key)
        .limit(MAX_KEYS)
    )
    return list(session.execute(query))


def _pg_percentiles(session: Session, key: Any, since: datetime, until: datetime) -> dict[str, dict]:
    columns = [
        func.percentile_cont(q).within_group(cast(column, Float)).label(f"{name}_p{round(q * 100)}")
        for name, column in (("runtime", TaskRun.runtime_s), ("wait", TaskRun.wait_s))
        for q in QUANTILES
    ]
    query = (
        select(key.label("key"), *columns).where(*_finished_in(since, until), key.is_not(None)).group_by(key)
    )
    return {row.key: dict(row._mapping) for row in session.execute(query)}


def _sampled_percentiles(session: Session, key: Any, since: datetime, until: datetime) -> dict[str, dict]:
    query = (
        select(key, TaskRun.runtime_s, TaskRun.wait_s)
        .where(*_finished_in(since, until), key.is_not(None))
        .order_by(TaskRun.finished_at.desc())
        .limit(SAMPLE_MAX)
    )
    runtimes: dict[str, list[float]] = defaultdict(list)
    waits: dict[str, list[float]] = defaultdict(list)
    for name, runtime, wait in session.execute(query):
        if runtime is not None:
            runtimes[name].append(runtime)
        if wait is not None:
            waits[name].append(wait)
    found: dict[str, dict] = {}
    for name in set(runtimes) | set(waits):
        found[name] = {
            f"{label}_p{round(q * 100)}": percentile(values[name], q)
            for label, values in (("runtime", runtimes), ("wait", waits))
            for q in QUANTILES
        }
    return found


def summary(session: Session, *, by: By, since: datetime, until: datetime) -> list[dict]:
    """Per task name or queue: counts, runtime and wait percentiles (seconds), failure and
    retry rates, throughput (finished runs per second); the busiest MAX_KEYS first."""
    check_window(since, until)
    key = _column(by)
    postgres = session.get_bind().dialect.name == "postgresql"
    quantiles = (_pg_percentiles if postgres else _sampled_percentiles)(session, key, since, until)
    seconds = (until - since).total_seconds()
    rows = []
    for row in _counts(session, key, since, until):
        figures = quantiles.get(row.key, {})
        rows.append({
            "key": row.key,
            "count": row.count,
            "succeeded": int(row.succeeded or 0),
            "failed": int(row.failed or 0),
            "retried": int(row.retried or 0),
            **{
                f"{label}_p{round(q * 100)}": figures.get(f"{label}_p{round(q * 100)}")
                for label in ("runtime", "wait")
                for q in QUANTILES
            },
            "failure_rate": (row.failed or 0) / row.count,
            "retry_rate": (row.retried or 0) / row.count,
            "throughput_per_s": row.count / seconds,
        })  # fmt: skip
    return rows


def series(
    session: Session, *, by: By, key: str, since: datetime, until: datetime, step_s: float
) -> list[dict]:
    """Per step bucket (from ``since``): runs finished, failures, p95 runtime and wait; for
    charts. Buckets with no run are present with zero counts."""
    check_window(since, until)
    column = _column(by)
    if step_s <= 0 or (until - since).total_seconds() / step_s > MAX_BUCKETS:
        raise Rejected.field(
            f"step gives over {MAX_BUCKETS} buckets (or is not positive)", "step", "too_many"
        )
    query = (
        select(TaskRun.finished_at, TaskRun.state, TaskRun.runtime_s, TaskRun.wait_s)
        .where(*_finished_in(since, until), column == key)
        .order_by(TaskRun.finished_at.desc())
        .limit(SAMPLE_MAX)
    )
    count = math.ceil((until - since).total_seconds() / step_s)
    buckets: list[dict[str, Any]] = [
        {"at": since + timedelta(seconds=i * step_s), "count": 0, "failures": 0, "runtimes": [], "waits": []}
        for i in range(count)
    ]
    for finished_at, state, runtime, wait in session.execute(query):
        assert finished_at is not None  # the query asks for finished runs
        bucket = buckets[min(int((finished_at - since).total_seconds() // step_s), count - 1)]
        bucket["count"] += 1
        bucket["failures"] += state == "FAILURE"
        if runtime is not None:
            bucket["runtimes"].append(runtime)
        if wait is not None:
            bucket["waits"].append(wait)
    return [
        {
            "at": b["at"],
            "count": b["count"],
            "failures": b["failures"],
            "runtime_p95": percentile(b.pop("runtimes"), 0.95),
            "wait_p95": percentile(b.pop("waits"), 0.95),
        }
        for b in buckets
    ]
