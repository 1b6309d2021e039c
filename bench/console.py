"""Console render time with 10,000,000 metric rows and 100 services in PostgreSQL: p95 of
the overview and of an instance page, rendered by the app (the whole request, no network),
against the same SQL statements the page ran, replayed by psycopg (the raw engine)."""

from __future__ import annotations

import os
import random
import re
import statistics
import time
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import event
from starlette.testclient import TestClient

from controlplane.settings import Settings, load_settings
from controlplane.store import partitions
from controlplane.store.db import make_engine, make_sessionmaker
from tests.support.results import Result
from tests.support.stores import build_rollups, fresh_schema

POINTS = int(os.environ.get("BENCH_CONSOLE_POINTS", 10_000_000))
SERVICES, DAYS, RENDERS, GOAL_MS = 100, 7, 100, 150.0


def _metric_types() -> list[str]:
    """What the pages read: the overview's tiles and the instance page's Redis panels."""
    from console.catalog import PANELS
    from console.overview import TILES

    return sorted({t.metric_type for t in TILES} | {p.metric_type for p in PANELS["redis"]})


def _address(s: int) -> str:
    return f"10.0.{s // 250}.{s % 250}:6379"


def _load(url: str, end: datetime, types: list[str]) -> None:
    """Raw points generated inside PostgreSQL (one series per service and metric type,
    tagged with the instance as agents tag them), the roll-ups ingest would have built,
    and a catalog of 100 Redis instances each with a short health history."""
    from controlplane.catalog.instances import InstanceReport, report

    start = end - timedelta(days=DAYS)
    series = SERVICES * len(types)
    engine = make_engine(url)
    with engine.begin() as conn:
        days = {(start + timedelta(days=d)).date() for d in range(DAYS + 2)}
        for table in ("infrastructure_metrics", "infrastructure_events"):
            partitions.ensure_partitions(conn, table=table, days=days)
    with make_sessionmaker(engine).begin() as session:
        for s in range(SERVICES):
            for status, ago in (("passing", 3600), ("critical", 1800), ("passing", 600)):
                item = InstanceReport(service=f"svc-{s:03d}", kind="redis", address=_address(s),
                                      status=status, role="primary")  # fmt: skip
                report(session, item, agent_id=None, now=end - timedelta(seconds=ago), hold_s=0)
    engine.dispose()
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO infrastructure_metrics (metric_type, "timestamp", service_name, value, tags)
            SELECT (%(types)s::text[])[1 + k %% %(n_types)s],
                   %(start)s + make_interval(secs => n * %(interval)s),
                   'svc-' || lpad((k / %(n_types)s)::text, 3, '0'), (random() * 100)::float8,
                   jsonb_build_object('instance', '10.0.' || ((k / %(n_types)s) / 250) || '.'
                                      || ((k / %(n_types)s) %% 250) || ':6379')
            FROM generate_series(0, %(per_series)s - 1) AS n, generate_series(0, %(series)s - 1) AS k
            """,
            {
                "types": types,
                "n_types": len(types),
                "start": start,
                "series": series,
                "interval": DAYS * 86400 * series / POINTS,
                "per_series": POINTS // series,
            },
        )
        build_rollups(conn)


def _p95(timings: list[float]) -> float:
    return statistics.quantiles(timings, n=20)[18]


def _login(client: TestClient, token: str) -> None:
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    answer = client.post("/login", data={"csrf": csrf, "token": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text


def run(settings: Settings) -> list[Result]:
    from controlplane.app import create_app

    end = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    types = _metric_types()
    rng = random.Random(7)
    results = []
    with fresh_schema(settings) as url:
        print(f"bench: loading {POINTS:,} points, {SERVICES} services x {len(types)} metric types ...",
              flush=True)  # fmt: skip
        _load(url, end, types)
        token = "bench-" + os.urandom(16).hex()
        app = create_app(load_settings(database_url=url, admin_token=token, _env_file=None))
        statements: list[tuple[str, object]] = []

        def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            statements.append((statement, parameters))

        event.listen(app.state.engine, "before_cursor_execute", capture)
        pages = {
            "console_overview_p95_ms": lambda: "/",
            "console_instance_p95_ms": lambda: (
                f"/services/svc-{(s := rng.randrange(SERVICES)):03d}/instances/{_address(s)}"
            ),
        }
        with TestClient(app, base_url="http://127.0.0.1") as client, psycopg.connect(
            url.replace("+psycopg", ""), autocommit=True
        ) as raw:  # fmt: skip
            _login(client, token)
            for name, path_of in pages.items():
                for _ in range(5):  # warm-up: plans cached, pool filled
                    assert client.get(path_of()).status_code == 200
                timings, raw_timings = [], []
                slowest: dict[str, float] = {}
                for _ in range(RENDERS):
                    path = path_of()
                    statements.clear()
                    started = time.perf_counter()
                    answer = client.get(path)
                    timings.append((time.perf_counter() - started) * 1000)
                    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
                    ran = [(s, p) for s, p in statements if s.lstrip().upper().startswith("SELECT")]
                    started = time.perf_counter()
                    for statement, parameters in ran:
                        one = time.perf_counter()
                        raw.execute(statement, parameters).fetchall()  # type: ignore[arg-type]
                        key = " ".join(statement.split())[:160]
                        slowest[key] = slowest.get(key, 0.0) + (time.perf_counter() - one) * 1000 / RENDERS
                    raw_timings.append((time.perf_counter() - started) * 1000)
                ours, baseline = _p95(timings), _p95(raw_timings)
                print(f"bench: {name}: {ours:.1f} ms (its SQL alone: {baseline:.1f} ms, "
                      f"{len(ran)} statements)", flush=True)  # fmt: skip
                for key, ms in sorted(slowest.items(), key=lambda kv: -kv[1])[:3]:
                    print(f"bench:   {ms:7.1f} ms/render  {key}", flush=True)
                results.append(
                    Result(
                        name=name,
                        ours=round(ours, 1),
                        baseline=round(baseline, 1),
                        unit=f"ms, p95 of {RENDERS} server renders (baseline: the page's SQL replayed by psycopg)",
                        goal=f"< {GOAL_MS:g} ms",
                        met=ours < GOAL_MS,
                    )
                )
        app.state.engine.dispose()
    return results
