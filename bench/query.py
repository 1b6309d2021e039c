"""Range queries: 10,000,000 raw points over 7 days and 100 series; p95 latency of a
24-hour query at 1-minute step and a 7-day query at 1-hour step through
GET /api/v1/metrics, against the same aggregation run by psycopg on the raw rows."""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from controlplane.settings import Settings
from controlplane.store import partitions
from controlplane.store.db import make_engine
from tests.support.results import Result
from tests.support.serve import running_control_plane
from tests.support.stores import build_rollups, fresh_schema

POINTS = int(os.environ.get("BENCH_QUERY_POINTS", 10_000_000))
SERIES, DAYS, QUERIES, GOAL_MS = 100, 7, 60, 100.0
METRIC = "coreplane_bench_latency_seconds"


def _load(url: str, end: datetime) -> None:
    """Raw points generated inside PostgreSQL, then roll-ups built from them (the state
    incremental ingest would have left)."""
    start = end - timedelta(days=DAYS)
    interval_s = DAYS * 86400 * SERIES / POINTS
    engine = make_engine(url)
    with engine.begin() as conn:
        days = {(start + timedelta(days=d)).date() for d in range(DAYS + 2)}
        partitions.ensure_partitions(conn, table="infrastructure_metrics", days=days)
    engine.dispose()
    dsn = url.replace("+psycopg", "")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO infrastructure_metrics (metric_type, "timestamp", service_name, value, tags)
            SELECT %(metric)s, %(start)s + make_interval(secs => n * %(interval)s),
                   'svc' || (s / 10), (random() * 100)::float8,
                   jsonb_build_object('instance', 'i' || (s %% 10), 'region', 'local')
            FROM generate_series(0, %(per_series)s - 1) AS n, generate_series(0, %(series)s - 1) AS s
            """,
            {
                "metric": METRIC,
                "start": start,
                "interval": interval_s,
                "per_series": POINTS // SERIES,
                "series": SERIES,
            },
        )
        build_rollups(conn)


def _p95_ms(run: Callable[[datetime, str], None], end: datetime) -> float:
    rng = random.Random(11)
    timings = []
    for _ in range(QUERIES):
        service = f"svc{rng.randrange(SERIES // 10)}"
        at = end - timedelta(minutes=rng.randrange(0, 120))
        started = time.perf_counter()
        run(at, service)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.quantiles(timings, n=20)[18]


def _api(client: httpx.Client, span: timedelta, step: int) -> Callable[[datetime, str], None]:
    def run(at: datetime, service: str) -> None:
        response = client.get(
            "/api/v1/metrics",
            params={
                "metric_type": METRIC,
                "service_name": service,
                "start": (at - span).isoformat(),
                "end": at.isoformat(),
                "step": step,
                "agg": "avg",
            },
        )
        response.raise_for_status()
        assert response.json()["series"], "the query returned no series"

    return run


def _raw_sql(conn: psycopg.Connection, span: timedelta, step: int) -> Callable[[datetime, str], None]:
    def run(at: datetime, service: str) -> None:
        conn.execute(
            """
            SELECT date_bin(make_interval(secs => %s), "timestamp", TIMESTAMP '1970-01-01') AS b,
                   avg(value)
            FROM infrastructure_metrics
            WHERE metric_type = %s AND service_name = %s AND "timestamp" >= %s AND "timestamp" < %s
            GROUP BY b ORDER BY b
            """,
            (step, METRIC, service, at - span, at),
        ).fetchall()

    return run


def run(settings: Settings) -> list[Result]:
    end = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    cases = [
        ("query_24h_p95_ms", timedelta(hours=24), 60),
        ("query_7d_p95_ms", timedelta(days=7), 3600),
    ]
    results = []
    with fresh_schema(settings) as url:
        print(f"bench: loading {POINTS:,} points over {DAYS} days and {SERIES} series ...", flush=True)
        _load(url, end)
        with (
            running_control_plane(url) as (base, token),
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client,
            psycopg.connect(url.replace("+psycopg", "")) as conn,
        ):
            for name, span, step in cases:
                _api(client, span, step)(end, "svc0")  # warm-up
                ours = _p95_ms(_api(client, span, step), end)
                baseline = _p95_ms(_raw_sql(conn, span, step), end)
                results.append(
                    Result(
                        name=name,
                        ours=round(ours, 1),
                        baseline=round(baseline, 1),
                        unit=f"ms, p95 of {QUERIES} queries (baseline: psycopg aggregating raw rows)",
                        goal=f"< {GOAL_MS:g} ms",
                        met=ours < GOAL_MS,
                    )
                )
    return results
