"""Range queries over raw points and roll-ups, bucketed by step. Session first."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, cast, func, literal, literal_column, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from controlplane.store.models import InfrastructureMetric, MetricRollup1h, MetricRollup1m

AGGREGATES = ("avg", "min", "max", "sum", "count", "p95")
# Any: the raw table and the roll-ups share the columns these queries use, but no class says so.
SOURCES: dict[str, Any] = {"raw": InfrastructureMetric, "1m": MetricRollup1m, "1h": MetricRollup1h}
EPOCH = datetime(1970, 1, 1)
# avg and sum add values up inside the database, where two points near the largest double
# (1.7e308 twice) overflow: PostgreSQL raises an error, SQLite returns inf (null in JSON).
# So they add values scaled by 2**-64 and the result is scaled back in Python (to inf only
# when the figure itself does not fit). Scaling by a power of two is exact, so every other
# figure keeps the same bits; only values below ~1e-289 lose precision, and only in a
# bucket with values that large.
SCALED = frozenset({"avg", "sum"})
SCALE = math.ldexp(1.0, -64)
UNSCALE = math.ldexp(1.0, 64)


@dataclass
class SeriesQuery:
    metric_type: str
    start: datetime
    end: datetime
    step_s: int
    agg: str = "avg"
    service_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    group_by: str | None = None


def pick_source(query: SeriesQuery, *, oldest_1m: datetime | None = None) -> str:
    """Raw points for fine steps and for p95; otherwise the coarsest roll-up that fits."""
    if query.agg == "p95":
        return "raw"
    if query.step_s % 3600 == 0:
        return "1h"
    if query.step_s % 60 == 0 and (oldest_1m is None or query.start >= oldest_1m):
        return "1m"
    return "raw"


def _bucket(dialect: str, column: Any, step_s: int) -> ColumnElement:
    if dialect == "postgresql":
        return func.date_bin(
            literal_column(f"interval '{int(step_s)} seconds'"),
            column,
            literal_column("TIMESTAMP '1970-01-01'"),
        )
    seconds = cast(func.strftime("%s", column), Float)
    return func.datetime(func.floor(seconds / step_s) * step_s, "unixepoch")


def tag_value(dialect: str, column: Any, key: str) -> ColumnElement:
    """The text of tag ``key`` in a JSON ``tags`` column, as SQL (PostgreSQL or SQLite)."""
    if dialect == "postgresql":
        return type_coerce(column, JSONB)[key].astext
    return func.json_extract(column, f'$."{key}"')


def _where(dialect: str, model: Any, time_col: Any, query: SeriesQuery) -> list[ColumnElement]:
    where = [model.metric_type == query.metric_type, time_col >= query.start, time_col < query.end]
    if query.service_name:
        where.append(model.service_name == query.service_name)
    if query.tags:
        if dialect == "postgresql":
            where.append(type_coerce(model.tags, JSONB).contains(query.tags))
        else:
            where.extend(tag_value(dialect, model.tags, k) == v for k, v in query.tags.items())
    return where


def _scaled(value: Any) -> ColumnElement:
    return value * literal(SCALE, Float)


def _within(dialect: str, value: ColumnElement, low: ColumnElement, high: ColumnElement) -> ColumnElement:
    if dialect == "postgresql":
        return func.greatest(low, func.least(high, value))
    return func.max(low, func.min(high, value))  # SQLite's scalar (two-argument) min and max


def _value(dialect: str, model: Any, source: str, agg: str) -> ColumnElement:
    """The bucket's aggregate: over raw points, or from a roll-up's count/sum/min/max;
    avg and sum come scaled by SCALE (see SCALED)."""
    if source == "raw":
        return {
            "avg": func.avg(_scaled(model.value)),
            "min": func.min(model.value),
            "max": func.max(model.value),
            "sum": func.sum(_scaled(model.value)),
            "count": func.count(),
            "p95": func.percentile_cont(0.95).within_group(model.value),
        }[agg]
    # A roll-up whose own sum overflowed when written holds inf; the mean still lies
    # between the bucket's min and max, so it is bounded by them (exact when they agree).
    mean = func.sum(_scaled(model.sum)) / func.sum(model.count)
    return {
        "avg": _within(dialect, mean, _scaled(func.min(model.min)), _scaled(func.max(model.max))),
        "min": func.min(model.min),
        "max": func.max(model.max),
        "sum": func.sum(_scaled(model.sum)),
        "count": func.sum(model.count),
    }[agg]


def _unscaled(agg: str, value: Any) -> float | None:
    return None if value is None else _unscale(agg, value)


def _unscale(agg: str, value: Any) -> float:
    return float(value) * UNSCALE if agg in SCALED else float(value)


def series(session: Session, query: SeriesQuery, source: str) -> list[dict]:
    """[{labels, points: [[bucket, value], ...]}], one entry per service (and group)."""
    dialect = session.get_bind().dialect.name
    model = SOURCES[source]
    time_col = model.timestamp if source == "raw" else model.bucket
    bucket = _bucket(dialect, time_col, query.step_s).label("b")
    group = (
        tag_value(dialect, model.tags, query.group_by).label("g")
        if query.group_by
        else literal_column("NULL").label("g")
    )
    where = _where(dialect, model, time_col, query)
    python_p95 = query.agg == "p95" and dialect != "postgresql"
    value = (model.value if python_p95 else _value(dialect, model, source, query.agg)).label("v")

    stmt = select(model.service_name, group, bucket, value).where(and_(*where))
    if not python_p95:
        stmt = stmt.group_by(model.service_name, literal_column("g"), literal_column("b"))
    stmt = stmt.order_by(model.service_name, literal_column("g"), literal_column("b"))

    grouped: dict[tuple, list] = defaultdict(list)
    for service_name, g, b, v in session.execute(stmt):
        grouped[(service_name, g)].append((_as_datetime(b), v))
    if python_p95:
        grouped = {k: _p95_by_bucket(rows) for k, rows in grouped.items()}
    out = []
    for (service_name, g), rows in grouped.items():
        labels = {"service_name": service_name}
        if query.group_by:
            labels[query.group_by] = g
        points = [[b.isoformat() + "Z", _unscaled(query.agg, v)] for b, v in rows]
        out.append({"labels": labels, "points": points})
    return out


COMBINE: dict[str, Callable[[ColumnElement[Any]], ColumnElement[Any]]] = {
    "avg": func.avg,
    "min": func.min,
    "max": func.max,
    "sum": func.sum,
}


def combined(session: Session, query: SeriesQuery, source: str, combine: str) -> list[tuple[datetime, float]]:
    """One series over every matching service: per bucket, ``combine`` (avg, min, max or sum)
    of each service's ``query.agg`` — computed by the database, so a figure over a hundred
    services returns one row per bucket (not p95: use ``series``)."""
    if query.agg == "p95":
        raise ValueError("combined() does not do p95")
    dialect = session.get_bind().dialect.name
    model = SOURCES[source]
    time_col = model.timestamp if source == "raw" else model.bucket
    bucket = _bucket(dialect, time_col, query.step_s).label("b")
    per_service = (
        select(model.service_name, bucket, _value(dialect, model, source, query.agg).label("v"))
        .where(and_(*_where(dialect, model, time_col, query)))
        .group_by(model.service_name, literal_column("b"))
        .subquery()
    )
    stmt = select(per_service.c.b, COMBINE[combine](per_service.c.v)).group_by(per_service.c.b)
    return [
        (_as_datetime(b), _unscale(query.agg, v))
        for b, v in session.execute(stmt.order_by(per_service.c.b))
        if v is not None
    ]


def _as_datetime(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _p95_by_bucket(rows: list[tuple[datetime, float]]) -> list[tuple[datetime, float]]:
    """Linear-interpolated 95th percentile per bucket (what percentile_cont computes)."""
    buckets: dict[datetime, list[float]] = defaultdict(list)
    for b, v in rows:
        buckets[b].append(v)
    out = []
    for b in sorted(buckets):
        values = sorted(buckets[b])
        rank = 0.95 * (len(values) - 1)
        lo, hi = math.floor(rank), math.ceil(rank)
        out.append((b, values[lo] + (values[hi] - values[lo]) * (rank - lo)))
    return out


def bucket_count(query: SeriesQuery) -> int:
    return math.ceil((query.end - query.start) / timedelta(seconds=query.step_s))
