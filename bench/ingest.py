"""Ingest: 1,000,000 metric points through POST /api/v1/ingest (4 clients, batches of
5,000) against a raw COPY of the same rows straight into PostgreSQL."""

from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from controlplane.settings import Settings
from controlplane.store import partitions
from controlplane.store.db import make_engine
from tests.support.results import Result
from tests.support.serve import running_control_plane
from tests.support.stores import fresh_schema

POINTS = int(os.environ.get("BENCH_INGEST_POINTS", 1_000_000))
BATCH, CLIENTS, SERIES = 5_000, 4, 100
GOAL = 0.5
WORKERS = int(os.environ.get("BENCH_INGEST_WORKERS", 2))


def make_points(start: datetime) -> list[dict]:
    """POINTS points over SERIES series (10 services x 10 instances), one per second each."""
    out = []
    for i in range(POINTS):
        s = i % SERIES
        out.append(
            {
                "metric_type": "coreplane_bench_value",
                "service_name": f"svc{s // 10}",
                "timestamp": (start + timedelta(seconds=i // SERIES)).isoformat(),
                "value": float(i % 997),
                "tags": {"instance": f"i{s % 10}", "region": "local"},
            }
        )
    return out


def _copy_baseline(url: str, points: list[dict]) -> float:
    engine = make_engine(url)
    with engine.begin() as conn:
        days = {datetime.fromisoformat(p["timestamp"]).date() for p in points}
        partitions.ensure_partitions(conn, table="infrastructure_metrics", days=days)
    engine.dispose()
    rows = [
        (
            uuid.uuid4(),
            p["metric_type"],
            p["timestamp"],
            p["service_name"],
            p["value"],
            json.dumps(p["tags"]),
        )
        for p in points
    ]
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        started = time.perf_counter()
        with conn.cursor().copy(
            'COPY infrastructure_metrics (id, metric_type, "timestamp", service_name, value, tags) FROM STDIN'
        ) as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - started


def _through_api(base_url: str, token: str, points: list[dict]) -> float:
    bodies = [
        json.dumps(
            {
                "batch_id": f"bench-{n}",
                "agent": "bench",
                "metrics": points[i : i + BATCH],
                "events": [],
            }
        ).encode()
        for n, i in enumerate(range(0, len(points), BATCH))
    ]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def send(chunk: list[bytes]) -> None:
        with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
            for body in chunk:
                response = client.post("/api/v1/ingest", content=body)
                if response.status_code != 202:
                    raise RuntimeError(f"ingest answered {response.status_code}: {response.text[:300]}")

    chunks = [bodies[c::CLIENTS] for c in range(CLIENTS)]
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(send, chunks))
    return time.perf_counter() - started


def run(settings: Settings) -> list[Result]:
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=POINTS // SERIES + 600)
    points = make_points(start)
    with fresh_schema(settings) as copy_url:
        copy_s = _copy_baseline(copy_url, points)
    with (
        fresh_schema(settings) as api_url,
        running_control_plane(api_url, workers=WORKERS) as (base_url, token),
    ):
        api_s = _through_api(base_url, token, points)
    ours, baseline = POINTS / api_s, POINTS / copy_s
    return [
        Result(
            name="ingest_rows_per_s",
            ours=round(ours),
            baseline=round(baseline),
            unit=f"rows/s ({POINTS:,} points; API: {CLIENTS} clients x {BATCH:,}-point batches)",
            goal=f"ratio >= {GOAL}",
            met=ours / baseline >= GOAL,
        )
    ]
