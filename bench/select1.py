"""A bare `SELECT 1` round trip through SQLAlchemy vs psycopg directly, on PostgreSQL."""

from __future__ import annotations

import statistics
import time

import psycopg
import sqlalchemy as sa

from controlplane.settings import Settings
from tests.support.results import Result

ROUNDS, REPEATS = 5000, 5


def _per_call_us(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - started) / rounds * 1e6


def run(settings: Settings) -> list[Result]:
    url = settings.postgres.url
    if not url:
        raise SystemExit("COREPLANE_POSTGRES__URL is unset: run scripts/services.sh up postgres")
    engine = sa.create_engine(url)
    query = sa.text("SELECT 1")
    ours, base = [], []
    with engine.connect() as conn, psycopg.connect(url.replace("+psycopg", "")) as raw:
        _per_call_us(lambda: conn.execute(query).scalar_one(), 500)  # warm-up
        _per_call_us(lambda: raw.execute("SELECT 1").fetchone(), 500)
        # Interleave repeats so both sides see the same machine load.
        for _ in range(REPEATS):
            ours.append(_per_call_us(lambda: conn.execute(query).scalar_one(), ROUNDS))
            base.append(_per_call_us(lambda: raw.execute("SELECT 1").fetchone(), ROUNDS))
    engine.dispose()
    o, b = statistics.median(ours), statistics.median(base)
    return [
        Result(
            name="select1_sqlalchemy_vs_psycopg",
            ours=round(o, 2),
            baseline=round(b, 2),
            unit="µs per round trip (median of 5 × 5000)",
            # No goal: this pair exercises the runner and shows SQLAlchemy's per-call cost.
            goal="none (reported)",
            met=None,
        )
    ]
