"""Storage analytics: GET /api/v1/storage/analytics (every bucket the caller holds a grant
on) and GET /api/v1/storage/analytics/{bucket} (read on it): objects, bytes, quota, growth,
request rates, errors and latencies by operation over a window, and for one bucket the series
and its top prefixes. The figures come from the store (controlplane/storage/analytics.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from controlplane.api.deps import caller_of, storage_of
from controlplane.schemas.ingest import UtcDatetime
from controlplane.storage import access, analytics, names
from controlplane.storage.access import Caller
from controlplane.web import READ_SESSION

router = APIRouter(prefix="/storage/analytics", tags=["storage"], dependencies=[Depends(storage_of)])

WINDOW = Query("1h", max_length=20, description=f"One of {', '.join(analytics.WINDOWS)}.")


class OpFigures(BaseModel):
    requests: int
    requests_per_s: float
    errors: int
    error_ratio: float | None
    p50_s: float | None
    p95_s: float | None


class BucketFigures(BaseModel):
    bucket: str
    objects: int
    bytes: int
    quota_bytes: int | None
    used_ratio: float | None
    usage_at: UtcDatetime | None
    growth_bytes: float | None
    requests: int
    requests_per_s: float
    errors: int
    error_ratio: float | None
    ops: dict[str, OpFigures]


class Overview(BaseModel):
    window: str
    since: UtcDatetime
    until: UtcDatetime
    buckets: list[BucketFigures]
    truncated: bool


class SeriesOut(BaseModel):
    labels: dict[str, str | None]
    points: list[tuple[str, float | None]]


class Prefix(BaseModel):
    prefix: str
    bytes: int


class Detail(BucketFigures):
    window: str
    since: UtcDatetime
    until: UtcDatetime
    step_s: int
    series: dict[str, list[SeriesOut]]
    top_prefixes: list[Prefix]


@router.get("", response_model=Overview, summary="Figures of every bucket you hold a grant on")
def storage_overview(
    window: str = WINDOW, caller: Caller = Depends(caller_of), session: Session = READ_SESSION
) -> dict[str, Any]:
    return analytics.overview(session, access.visible(session, caller), window)


@router.get("/{bucket}", response_model=Detail, summary="One bucket's figures, series and top prefixes")
def bucket_analytics(
    request: Request,
    bucket: str,
    window: str = WINDOW,
    caller: Caller = Depends(caller_of),
    session: Session = READ_SESSION,
) -> dict[str, Any]:
    names.bucket_name(bucket, "bucket", "path")
    analytics.window_of(window)  # a bad window is refused before the bucket is looked at
    row = access.require(session, caller, bucket, "read")
    retention = request.app.state.settings.retention
    return analytics.bucket_detail(session, row, window, rollup_1m_days=retention.rollup_1m_days)
