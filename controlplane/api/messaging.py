"""Messaging reads: queues with their depths, rates and consumers, a queue figure's history,
and definition backups: GET /api/v1/messaging/queues, /queues/{name}/stats, /analytics;
POST /messaging/backups, GET /messaging/definitions/export, POST /messaging/definitions/import
(admin). Part A owns /messaging/queues/{name} and its writes; part C /messaging/dead-letters."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from controlplane.api.deps import ADMIN, VIEWER, Principal, read_body
from controlplane.clock import utcnow
from controlplane.errors import Rejected
from controlplane.messaging import analytics, backup
from controlplane.messaging.connection import MessagingRuntime, require
from controlplane.messaging.management import Management
from controlplane.schemas.ingest import UtcDatetime, utc_naive
from controlplane.web import DB_SESSION, READ_SESSION

router = APIRouter(prefix="/messaging", tags=["messaging"])


class QueueStats(BaseModel):
    name: str
    type: str
    depth: int
    ready: int
    unacked: int
    consumers: int
    consumer_utilisation: float | None
    publish_rate: float
    deliver_rate: float
    ack_rate: float
    redeliver_rate: float
    oldest_age_s: float | None
    dead_letter_rate: float | None
    dlq_depth: int | None
    archived_dead: int | None


class SeriesOut(BaseModel):
    labels: dict[str, str | None]
    points: list[tuple[str, float | None]]


class AnalyticsOut(BaseModel):
    queue: str
    metric: str
    since: UtcDatetime
    until: UtcDatetime
    step_s: int
    series: list[SeriesOut]


class BackupIn(BaseModel):
    to: Literal["file", "s3"]
    scope: Literal["broker", "vhost"] = "broker"


class BackupOut(BaseModel):
    written: str
    scope: str


class ImportOut(BaseModel):
    loaded: dict[str, int]
    users_left_out: list[str]


def _runtime(request: Request) -> MessagingRuntime:
    return require(request.app.state.messaging)


def _who(principal: Principal) -> str:
    return f"{principal.kind}:{principal.name}"


@router.get("/queues", response_model=list[QueueStats], dependencies=[Depends(VIEWER)])
def list_queue_stats(request: Request, session: Session = READ_SESSION) -> list[QueueStats]:
    """Every queue of messaging's vhost: depth, rates, consumers, its DLQ, archived dead letters."""
    with Management.of(_runtime(request)) as management:
        return [QueueStats(**row) for row in analytics.queue_stats(management, session)]


@router.get("/queues/{name}/stats", response_model=QueueStats, dependencies=[Depends(VIEWER)])
def queue_stats(name: str, request: Request, session: Session = READ_SESSION) -> QueueStats:
    with Management.of(_runtime(request)) as management:
        return QueueStats(**analytics.queue_row(management, name, session))


@router.get("/analytics", response_model=AnalyticsOut, dependencies=[Depends(VIEWER)])
def queue_analytics(
    request: Request,
    session: Session = READ_SESSION,
    queue: str = Query(description="A queue of messaging's vhost."),
    metric: str = Query("depth", description=f"One of {', '.join(analytics.METRICS)}."),
    since: datetime | None = Query(None, description="Default: an hour before until."),
    until: datetime | None = Query(None, description="Default: now."),
    step_s: int = Query(60, description=f"Seconds per point; at most {analytics.MAX_BUCKETS} points."),
) -> AnalyticsOut:
    """A queue figure's history from what the agent's RabbitMQ collector pushed."""
    runtime = _runtime(request)
    until_at = utc_naive(until) if until else utcnow()
    since_at = utc_naive(since) if since else until_at - timedelta(hours=1)
    found = analytics.series(
        session, queue, metric, since_at, until_at, step_s, vhost=runtime.vhost,
        rollup_1m_days=request.app.state.settings.retention.rollup_1m_days,
    )  # fmt: skip
    return AnalyticsOut(queue=queue, metric=metric, since=since_at, until=until_at, step_s=step_s,
                        series=[SeriesOut(**s) for s in found])  # fmt: skip


@router.post("/backups", response_model=BackupOut, status_code=201)
def write_backup(
    backup_in: BackupIn, request: Request, session: Session = DB_SESSION, who: Principal = Depends(ADMIN)
) -> BackupOut:
    """Export the definitions (users' password hashes redacted) to the backup directory or
    bucket configured; 409 when that target is not."""
    runtime = _runtime(request)
    settings = runtime.settings
    with backup.BackupManagement.of(runtime) as management:
        written = backup.back_up(
            session, management, to=backup_in.to, directory=settings.messaging.backup_dir,
            bucket=settings.messaging.backup_bucket, s3=settings.s3, actor=_who(who),
            client=request.client.host if request.client else None, scope=backup_in.scope,
        )  # fmt: skip
    return BackupOut(written=written, scope=backup_in.scope)


@router.get("/definitions/export", dependencies=[Depends(ADMIN)])
def export_definitions(
    request: Request, scope: Literal["broker", "vhost"] = Query("broker")
) -> dict[str, Any]:
    """The definitions as RabbitMQ exports them, users' password hashes redacted."""
    with backup.BackupManagement.of(_runtime(request)) as management:
        return backup.export(management, scope=scope)


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Rejected.field(f"the body is not JSON: {exc}", "body", "not_json", "body") from None
    return backup.check(doc)


def _import(
    runtime: MessagingRuntime, doc: dict[str, Any], session: Session, who: str, client: str | None
) -> ImportOut:
    with backup.BackupManagement.of(runtime) as management:
        loaded, dropped = backup.import_document(session, management, doc, actor=who, client=client)
    return ImportOut(loaded=loaded, users_left_out=dropped)


@router.post("/definitions/import", response_model=ImportOut)
async def import_definitions(
    request: Request, session: Session = DB_SESSION, who: Principal = Depends(ADMIN)
) -> ImportOut:
    """Load a definitions document (an export of this API, or RabbitMQ's own): a broker-wide
    one into the broker, a vhost's into messaging's vhost. Users whose hash was redacted are
    left out. At most backup.MAX_DOCUMENT_BYTES."""
    runtime = _runtime(request)
    doc = _parse(await read_body(request, backup.MAX_DOCUMENT_BYTES))
    client = request.client.host if request.client else None
    return await asyncio.to_thread(_import, runtime, doc, session, _who(who), client)
