"""Bulk writes of metric points, events and roll-ups. Session first, never commits.

PostgreSQL takes rows through COPY (psycopg 3); SQLite through executemany.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from controlplane.store.models import (
    InfrastructureEvent,
    InfrastructureMetric,
    MetricRollup1h,
    MetricRollup1m,
)


@dataclass(frozen=True, slots=True)
class PointRow:
    metric_type: str
    service_name: str
    timestamp: datetime
    value: float
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class EventRow:
    event_type: str
    service_name: str
    timestamp: datetime
    status: str | None
    details: dict


def series_key(tags: dict[str, str]) -> str:
    """A stable id of a tag set (sorted keys), so roll-ups keep series apart."""
    canonical = json.dumps(tags, sort_keys=True, separators=(",", ":"))
    return hashlib.md5(canonical.encode(), usedforsecurity=False).hexdigest()


def _dumps(doc: dict) -> str:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


def write_points(session: Session, rows: Sequence[PointRow]) -> None:
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        cursor = session.connection().connection.driver_connection.cursor()
        with cursor.copy(
            'COPY infrastructure_metrics (id, metric_type, "timestamp", service_name, value, tags) '
            "FROM STDIN"
        ) as copy:
            for r in rows:
                copy.write_row(
                    (
                        uuid.uuid4(),
                        r.metric_type,
                        r.timestamp,
                        r.service_name,
                        r.value,
                        _dumps(r.tags),
                    )
                )
        return
    session.execute(
        insert(InfrastructureMetric),
        [
            {
                "id": uuid.uuid4(),
                "metric_type": r.metric_type,
                "timestamp": r.timestamp,
                "service_name": r.service_name,
                "value": r.value,
                "tags": r.tags,
            }
            for r in rows
        ],
    )


def write_events(session: Session, rows: Sequence[EventRow]) -> None:
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        cursor = session.connection().connection.driver_connection.cursor()
        with cursor.copy(
            "COPY infrastructure_events "
            '(id, event_type, "timestamp", service_name, details, status) FROM STDIN'
        ) as copy:
            for r in rows:
                copy.write_row(
                    (
                        uuid.uuid4(),
                        r.event_type,
                        r.timestamp,
                        r.service_name,
                        _dumps(r.details),
                        r.status,
                    )
                )
        return
    session.execute(
        insert(InfrastructureEvent),
        [
            {
                "id": uuid.uuid4(),
                "event_type": r.event_type,
                "timestamp": r.timestamp,
                "service_name": r.service_name,
                "details": r.details,
                "status": r.status,
            }
            for r in rows
        ],
    )


def _bucket(ts: datetime, seconds: int) -> datetime:
    if seconds == 60:
        return ts.replace(second=0, microsecond=0)
    return ts.replace(minute=0, second=0, microsecond=0)


def aggregate(rows: Sequence[PointRow], seconds: int) -> list[dict]:
    """Points folded into one roll-up row per (series, bucket), in a stable order."""
    acc: dict[tuple, list] = {}
    for r in rows:
        key = (r.metric_type, r.service_name, series_key(r.tags), _bucket(r.timestamp, seconds))
        cur = acc.get(key)
        if cur is None:
            acc[key] = [1, r.value, r.value, r.value, r.tags]
        else:
            cur[0] += 1
            cur[1] += r.value
            if r.value < cur[2]:
                cur[2] = r.value
            if r.value > cur[3]:
                cur[3] = r.value
    # Sorted, so concurrent batches lock the same rows in the same order (no deadlock).
    return [
        {
            "metric_type": k[0],
            "service_name": k[1],
            "series_key": k[2],
            "bucket": k[3],
            "count": v[0],
            "sum": v[1],
            "min": v[2],
            "max": v[3],
            "tags": v[4],
        }
        for k, v in sorted(acc.items(), key=lambda item: item[0])
    ]


def upsert_rollups(session: Session, rows: Sequence[PointRow]) -> None:
    """Fold the points into the 1-minute and 1-hour roll-ups, adding to what is there."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    make_insert = pg_insert if dialect == "postgresql" else sqlite_insert
    for model, seconds in ((MetricRollup1m, 60), (MetricRollup1h, 3600)):
        values = aggregate(rows, seconds)
        stmt = make_insert(model)
        table = model.__table__
        stmt = stmt.on_conflict_do_update(
            index_elements=["metric_type", "service_name", "series_key", "bucket"],
            set_={
                "count": table.c.count + stmt.excluded.count,
                "sum": table.c.sum + stmt.excluded.sum,
                "min": _least(dialect, table.c.min, stmt.excluded.min),
                "max": _greatest(dialect, table.c.max, stmt.excluded.max),
            },
        )
        session.execute(stmt, values)


def _least(dialect: str, a, b):  # type: ignore[no-untyped-def]
    from sqlalchemy import func

    return func.least(a, b) if dialect == "postgresql" else func.min(a, b)


def _greatest(dialect: str, a, b):  # type: ignore[no-untyped-def]
    from sqlalchemy import func

    return func.greatest(a, b) if dialect == "postgresql" else func.max(a, b)
