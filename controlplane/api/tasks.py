"""Task runs, their analytics, workers and queues: GET /api/v1/tasks..."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from controlplane.api.deps import VIEWER
from controlplane.clock import utcnow
from controlplane.errors import NotFound, Rejected
from controlplane.schemas.ingest import UtcDatetime, utc_naive
from controlplane.store.models import TaskRun
from controlplane.tasks import analytics, history, inspect
from controlplane.web import READ_SESSION

router = APIRouter(tags=["tasks"], dependencies=[Depends(VIEWER)])
INSPECT_TIMEOUT_S = 1.0


class TaskRunOut(BaseModel):  # type: ignore[no-redef]  # the plugin's __init__(**kwargs) vs the field
    task_id: str
    name: str | None
    queue: str | None
    state: str
    priority: int | None
    args: str | None
    kwargs: str | None
    result: str | None
    exception: str | None
    retries: int
    worker: str | None
    root_id: str | None
    parent_id: str | None
    sent_at: UtcDatetime | None
    due_at: UtcDatetime | None
    received_at: UtcDatetime | None
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    runtime_s: float | None
    wait_s: float | None
    updated_at: UtcDatetime


class TaskRunDetail(TaskRunOut):  # type: ignore[no-redef]
    traceback: str | None


class TaskRunPage(BaseModel):
    runs: list[TaskRunOut]
    next_cursor: str | None


class TaskFigures(BaseModel):
    key: str
    count: int
    succeeded: int
    failed: int
    retried: int
    runtime_p50: float | None
    runtime_p95: float | None
    runtime_p99: float | None
    wait_p50: float | None
    wait_p95: float | None
    wait_p99: float | None
    failure_rate: float
    retry_rate: float
    throughput_per_s: float


class TaskAnalytics(BaseModel):
    by: str
    since: UtcDatetime
    until: UtcDatetime
    groups: list[TaskFigures]


class WorkerOut(BaseModel):
    name: str
    online: bool
    pool_size: int | None
    processes: int
    active: int
    active_ids: list[str | None]
    reserved: int
    pid: int | None
    uptime_s: float | None
    last_heartbeat: UtcDatetime | None


class QueueOut(BaseModel):
    name: str
    exists: bool
    dead_letter: bool
    depth: int
    ready: int | None = None
    unacked: int | None = None
    consumers: int
    oldest_age_s: float | None
    max_priority: int | None


def _naive(value: datetime | None) -> datetime | None:
    return None if value is None else utc_naive(value)


def _encode(run: TaskRun) -> str:
    return base64.urlsafe_b64encode(f"{run.updated_at.isoformat()}|{run.task_id}".encode()).decode()


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        at, task_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(at), task_id
    except (ValueError, UnicodeDecodeError):
        raise Rejected.field("cursor is not one this API returned", "cursor", "malformed") from None


def _check_window(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise Rejected.field("since must be before until", "since", "order")


@router.get("/tasks", response_model=TaskRunPage)
def list_tasks(
    session: Session = READ_SESSION,
    state: str | None = Query(None, description=f"One of {', '.join(history.STATES)}."),
    name: str | None = Query(None, max_length=200),
    queue: str | None = Query(None, max_length=200),
    q: str | None = Query(
        None, max_length=200, description="Words to find in the task id, name, args or exception."
    ),
    since: datetime | None = Query(None, description="Last change at or after (RFC 3339)."),
    until: datetime | None = Query(None, description="Last change before (RFC 3339)."),
    limit: int = Query(100, ge=1, le=history.MAX_LIST),
    cursor: str | None = Query(None, max_length=400, description="next_cursor of the previous page."),
) -> TaskRunPage:
    since, until = _naive(since), _naive(until)
    _check_window(since, until)
    runs = history.list_runs(
        session, state=state, name=name, queue=queue, search=q, since=since, until=until,
        limit=limit + 1, before=_decode(cursor) if cursor else None,
    )  # fmt: skip
    page = runs[:limit]
    next_cursor = _encode(page[-1]) if len(runs) > limit else None
    return TaskRunPage(
        runs=[TaskRunOut.model_validate(r, from_attributes=True) for r in page], next_cursor=next_cursor
    )


@router.get("/tasks/analytics", response_model=TaskAnalytics)
def task_analytics(
    session: Session = READ_SESSION,
    by: Literal["name", "queue"] = Query("name"),
    since: datetime | None = Query(None, description="Default: an hour before until."),
    until: datetime | None = Query(None, description="Default: now."),
) -> TaskAnalytics:
    until = _naive(until) or utcnow()
    since = _naive(since) or until - timedelta(hours=1)
    groups = analytics.summary(session, by=by, since=since, until=until)
    return TaskAnalytics(by=by, since=since, until=until, groups=[TaskFigures(**g) for g in groups])


def _celery(request: Request) -> Any:
    runtime = request.app.state.task_runtime  # the process's one Celery app (app.py)
    if runtime is None:
        raise HTTPException(503, "no Celery broker is configured (COREPLANE_RABBITMQ__URL)")
    return runtime.app


@router.get("/tasks/workers", response_model=list[WorkerOut])
def task_workers(request: Request) -> list[WorkerOut]:
    app = _celery(request)
    monitor = getattr(request.app.state, "task_monitor", None)
    try:
        found = inspect.workers(app, INSPECT_TIMEOUT_S, heartbeats=monitor.heartbeats() if monitor else None)
    except OSError as exc:
        raise HTTPException(503, f"the broker did not answer: {exc}") from None
    return [WorkerOut(**w) for w in found]


@router.get("/tasks/queues", response_model=list[QueueOut])
def task_queues(request: Request) -> list[QueueOut]:
    settings = request.app.state.settings
    if not settings.rabbitmq.management_url:
        raise HTTPException(
            503, "RabbitMQ's management API is not configured (COREPLANE_RABBITMQ__MANAGEMENT_URL)"
        )
    try:
        return [QueueOut(**q) for q in inspect.queues(settings)]
    except httpx.HTTPError as exc:
        raise HTTPException(503, f"RabbitMQ's management API did not answer: {exc}") from None


@router.get("/tasks/{task_id}", response_model=TaskRunDetail)
def read_task(task_id: str, session: Session = READ_SESSION) -> TaskRunDetail:
    run = history.get_run(session, task_id)
    if run is None:
        raise NotFound(f"no task {task_id} in the history (it may be older than the retention)")
    return TaskRunDetail.model_validate(run, from_attributes=True)
