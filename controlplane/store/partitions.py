"""Daily range partitions of infrastructure_metrics and infrastructure_events (PostgreSQL).

A partition is named ``<table>_pYYYYMMDD`` and holds [day, day + 1). Functions take a
connection and never commit. Callers run them in a short transaction of their own,
before the data transaction: creating a partition locks its parent table, and a
partition must not vanish with a data transaction that rolls back. On SQLite they do
nothing (plain tables).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, text

PARTITIONED_TABLES = ("infrastructure_metrics", "infrastructure_events")
_SUFFIX = re.compile(r"_p(\d{8})$")

# Partitions known to exist, per process and database, so ingest asks the catalog at most
# once per day.
_known: set[tuple[str, str]] = set()


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _key(conn: Connection, name: str) -> tuple[str, str]:
    return (conn.engine.url.render_as_string(hide_password=True), name)


def ensure_partitions(conn: Connection, *, table: str, days: Iterable[date]) -> list[str]:
    """Create the daily partitions that do not exist yet; returns the ones created."""
    if not is_postgres(conn):
        return []
    created = []
    for day in sorted(set(days)):
        name = partition_name(table, day)
        if _key(conn, name) in _known:
            continue
        exists = conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar()
        if exists:
            # Remembered only once seen committed: a creation rolled back must be retried.
            _known.add(_key(conn, name))
        else:
            # Serialises concurrent creators (ingest threads, replicas) on one lock per table.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": table})
            conn.execute(
                text(
                    f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}" '
                    f"FOR VALUES FROM ('{day}') TO ('{day + timedelta(days=1)}')"
                )
            )
            created.append(name)
    return created


def list_partitions(conn: Connection, *, table: str) -> list[tuple[str, date]]:
    """The table's daily partitions as (name, day), oldest first."""
    if not is_postgres(conn):
        return []
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.oid = to_regclass(:t)"
        ),
        {"t": table},
    ).scalars()
    found = []
    for name in rows:
        if match := _SUFFIX.search(name):
            found.append((name, datetime.strptime(match.group(1), "%Y%m%d").date()))
    return sorted(found, key=lambda item: item[1])


def drop_partitions_before(conn: Connection, *, table: str, day: date) -> list[str]:
    """Drop every daily partition wholly older than ``day``; returns the dropped names."""
    dropped = []
    for name, partition_day in list_partitions(conn, table=table):
        if partition_day < day:
            conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
            _known.discard(_key(conn, name))
            dropped.append(name)
    return dropped


def forget_known() -> None:
    """Forget the cache (tests that drop tables behind the process's back)."""
    _known.clear()
