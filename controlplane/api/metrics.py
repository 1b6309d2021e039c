"""GET /api/v1/metrics: range queries, bucketed by step, over raw points or roll-ups."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from controlplane import telemetry
from controlplane.api.deps import VIEWER
from controlplane.clock import utcnow
from controlplane.ops.queries import MAX_STEP_S, MAX_TAG_FILTERS, series_query
from controlplane.schemas.ingest import Timestamp, UtcDatetime
from controlplane.store.queries import series
from controlplane.web import READ_SESSION

router = APIRouter(tags=["query"])


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
    step: int | None = Query(None, ge=1, le=MAX_STEP_S, description="Seconds; default: range/300"),
    agg: Literal["avg", "min", "max", "sum", "count", "p95"] = "avg",
    group_by: str | None = Query(None, max_length=64, description="A tag key to split series by"),
    source: Literal["auto", "raw", "1m", "1h"] = "auto",
    session: Session = READ_SESSION,
) -> MetricsOut:
    end_at = end or utcnow()
    query, chosen = series_query(
        metric_type=metric_type,
        start=start or end_at - timedelta(hours=1),
        end=end_at,
        step_s=step,
        agg=agg,
        service_name=service_name,
        tags=tags,
        group_by=group_by,
        source=source,
        rollup_1m_days=request.app.state.settings.retention.rollup_1m_days,
    )
    with telemetry.METRICS_QUERY_SECONDS.labels(chosen).time():
        found = series(session, query, chosen)
    return MetricsOut(
        metric_type=metric_type,
        agg=agg,
        step=query.step_s,
        source=chosen,
        start=query.start,
        end=query.end,
        series=found,
    )
