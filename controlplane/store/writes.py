"""Bulk writes of metric points, events and roll-ups. Session first, never commits.

PostgreSQL takes rows through COPY (psycopg 3); SQLite through executemany.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from controlplane.schemas.ingest import MetricPointIn
from controlplane.store.models import (
    InfrastructureEvent,
    InfrastructureMetric,
    MetricRollup1h,
    MetricRollup1m,
)


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


class _TagCache:
    """Per batch: the JSON text and series key of each distinct tag set, computed once.
    A batch carries few distinct tag sets and thousands of points."""

    def __init__(self) -> None:
        self._seen: dict[tuple, tuple[str, str]] = {}

    def get(self, tags: dict[str, str]) -> tuple[str, str]:
        """(JSON text, series key) of the tag set."""
        identity = tuple(sorted(tags.items()))
        found = self._seen.get(identity)
        if found is None:
            found = self._seen[identity] = (_dumps(tags), series_key(tags))
        return found


def _dumps(doc: dict) -> str:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


def _pg_cursor(session: Session) -> Any:
    """A cursor of psycopg itself, for COPY and array parameters."""
    driver = session.connection().connection.driver_connection
    assert driver is not None  # the session's connection is open: it was just taken
    return driver.cursor()


def write_points(session: Session, rows: Sequence[MetricPointIn]) -> None:
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        # ids come from the columns' gen_random_uuid() default (events too): faster in the server.
        cursor = _pg_cursor(session)
        tags = _TagCache()
        with cursor.copy(
            'COPY infrastructure_metrics (metric_type, "timestamp", service_name, value, tags) FROM STDIN'
        ) as copy:
            for r in rows:
                copy.write_row((r.metric_type, r.timestamp, r.service_name, r.value, tags.get(r.tags)[0]))
        return
    session.execute(
        insert(InfrastructureMetric),
        [
            {
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
        cursor = _pg_cursor(session)
        with cursor.copy(
            'COPY infrastructure_events (event_type, "timestamp", service_name, details, status) FROM STDIN'
        ) as copy:
            for r in rows:
                copy.write_row((r.event_type, r.timestamp, r.service_name, _dumps(r.details), r.status))
        return
    session.execute(
        insert(InfrastructureEvent),
        [
            {
                "event_type": r.event_type,
                "timestamp": r.timestamp,
                "service_name": r.service_name,
                "details": r.details,
                "status": r.status,
            }
            for r in rows
        ],
    )


def aggregate(rows: Sequence[MetricPointIn]) -> tuple[list[dict], list[dict]]:
    """Points folded into roll-up rows per (series, bucket): (1-minute, 1-hour), each sorted
    so that concurrent batches lock the same rows in the same order (no deadlock)."""
    minute: dict[tuple, list] = {}
    hour: dict[tuple, list] = {}
    tags = _TagCache()
    buckets: dict[datetime, tuple[datetime, datetime]] = {}  # a batch repeats timestamps
    for r in rows:
        b = buckets.get(r.timestamp)
        if b is None:
            m = r.timestamp.replace(second=0, microsecond=0)
            b = buckets[r.timestamp] = (m, m.replace(minute=0))
        key = tags.get(r.tags)[1]
        for acc, bucket in ((minute, b[0]), (hour, b[1])):
            k = (r.metric_type, r.service_name, key, bucket)
            cur = acc.get(k)
            if cur is None:
                acc[k] = [1, r.value, r.value, r.value, r.tags]
            else:
                cur[0] += 1
                cur[1] += r.value
                if r.value < cur[2]:
                    cur[2] = r.value
                if r.value > cur[3]:
                    cur[3] = r.value
    return _rollup_rows(minute), _rollup_rows(hour)


def _rollup_rows(acc: dict[tuple, list]) -> list[dict]:
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


# PostgreSQL raises an error when adding two finite doubles overflows (1.7e308 twice), which
# would refuse the whole batch; the sum then becomes +-Infinity, as in SQLite and Python,
# and the query bounds that bucket's mean by its min and max (controlplane/store/queries.py).
# Two values below 2**1023 cannot overflow; otherwise add halves and double them if they fit.
_PG_UPSERT = """
INSERT INTO {table} (metric_type, service_name, series_key, bucket, tags, count, sum, min, max)
SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::timestamp[], %s::text[]::jsonb[],
                     %s::bigint[], %s::float8[], %s::float8[], %s::float8[])
ON CONFLICT (metric_type, service_name, series_key, bucket) DO UPDATE SET
    count = {table}.count + EXCLUDED.count,
    sum = CASE
        WHEN abs({table}.sum) < 8.98846567431158e307::float8
         AND abs(EXCLUDED.sum) < 8.98846567431158e307::float8
            THEN {table}.sum + EXCLUDED.sum
        WHEN abs({table}.sum * 0.5 + EXCLUDED.sum * 0.5) < 8.98846567431158e307::float8
            THEN ({table}.sum * 0.5 + EXCLUDED.sum * 0.5) * 2
        ELSE sign({table}.sum * 0.5 + EXCLUDED.sum * 0.5) * 'Infinity'::float8
    END,
    min = LEAST({table}.min, EXCLUDED.min), max = GREATEST({table}.max, EXCLUDED.max)
"""


def upsert_rollups(session: Session, rows: Sequence[MetricPointIn]) -> None:
    """Fold the points into the 1-minute and 1-hour roll-ups, adding to what is there."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    for model, values in zip((MetricRollup1m, MetricRollup1h), aggregate(rows), strict=True):
        if dialect == "postgresql":
            # One statement over arrays: a round trip and no per-row work in Python.
            columns = [
                [v[c] for v in values] for c in ("metric_type", "service_name", "series_key", "bucket")
            ]
            columns.append([_dumps(v["tags"]) for v in values])
            columns += [[v[c] for v in values] for c in ("count", "sum", "min", "max")]
            cursor = _pg_cursor(session)
            cursor.execute(_PG_UPSERT.format(table=model.__tablename__), columns)
            continue
        stmt = sqlite_insert(model)
        table = model.__table__
        stmt = stmt.on_conflict_do_update(
            index_elements=["metric_type", "service_name", "series_key", "bucket"],
            set_={
                "count": table.c.count + stmt.excluded.count,
                "sum": table.c.sum + stmt.excluded.sum,
                "min": func.min(table.c.min, stmt.excluded.min),
                "max": func.max(table.c.max, stmt.excluded.max),
            },
        )
        session.execute(stmt, values)
