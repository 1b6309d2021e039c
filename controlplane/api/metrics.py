"""GET /api/v1/metrics: range queries, bucketed by step, over raw points or roll-ups."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from controlplane import telemetry
from controlplane.api.deps import READ_SESSION, VIEWER
from controlplane.clock import utcnow
from controlplane.errors import Rejected
from controlplane.ops.queries import MAX_TAG_FILTERS, parse_tag_filters
from controlplane.schemas.ingest import Timestamp, UtcDatetime
from controlplane.store.queries import SeriesQuery, bucket_count, pick_source, series

router = APIRouter(tags=["query"])
MAX_BUCKETS = 11_000


class SeriesOut(BaseModel):
    labels: dict[str, str | None]
    points: list[tuple[str, float | None]] = Field(description="[bucket start (UTC), value]")


class MetricsOut(BaseModel):
    metric_type: str
    agg: str
    step: int
    source: str = Field(description="raw, 1m or 1h: where the figures came from")
    start: UtcDatetime
    end: UtcDatetime
    series: list[SeriesOut]


@router.get("/metrics", response_model=MetricsOut, dependencies=[Depends(VIEWER)])
def query_metrics(
    request: Request,
    metric_type: str = Query(min_length=1, max_length=50),
    service_name: str | None = Query(None, max_length=50),
    tags: list[str] = Query(
        default_factory=list, description=f"key=value filters, repeatable (at most {MAX_TAG_FILTERS})"
    ),
    start: Timestamp | None = Query(None, description="Default: end - 1 hour"),
    end: Timestamp | None = Query(None, description="Default: now"),
    step: int | None = Query(None, ge=1, le=31 * 86400, description="Seconds; default: range/300"),
    agg: Literal["avg", "min", "max", "sum", "count", "p95"] = "avg",
    group_by: str | None = Query(None, max_length=64, description="A tag key to split series by"),
    source: Literal["auto", "raw", "1m", "1h"] = "auto",
    session: Session = READ_SESSION,
) -> MetricsOut:
    end_at = end or utcnow()
    start_at = start or end_at - timedelta(hours=1)
    if start_at >= end_at:
        raise Rejected.field(
            "start must be before end",
            "start",
            "not before end",
        )
    step_s = step or max(1, int((end_at - start_at).total_seconds() // 300))
    query = SeriesQuery(
        metric_type=metric_type,
        start=start_at,
        end=end_at,
        step_s=step_s,
        agg=agg,
        service_name=service_name,
        tags=parse_tag_filters(tags),
        group_by=group_by,
    )
    if bucket_count(query) > MAX_BUCKETS:
        raise Rejected.field(
            f"{bucket_count(query)} buckets per series, over {MAX_BUCKETS}: raise step or narrow the range",
            "step",
            "too many buckets",
        )
    retention = request.app.state.settings.retention
    chosen = source
    if source == "auto":
        oldest_1m = end_at - timedelta(days=retention.rollup_1m_days)
        chosen = pick_source(query, oldest_1m=oldest_1m)
    elif source != "raw" and agg == "p95":
        raise Rejected.field(
            "p95 needs raw points: roll-ups keep count, sum, min and max only",
            "source",
            "p95 on a roll-up",
        )
    with telemetry.METRICS_QUERY_SECONDS.labels(chosen).time():
        found = series(session, query, chosen)
    return MetricsOut(
        metric_type=metric_type,
        agg=agg,
        step=step_s,
        source=chosen,
        start=start_at,
        end=end_at,
        series=found,
    )
