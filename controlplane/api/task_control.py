"""Submitting tasks and workflows, cancelling, retrying, purging, dead letters.

Submitting is immediate (operator); every other write is a task operation, created as an
action (target "celery") that the leader carries out, so it has an audit trail and the
console can preview it. Fixed paths come before /tasks/{task_id}/...
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from controlplane.api.actions import ActionOut, request_action
from controlplane.api.deps import OPERATOR, VIEWER, Principal
from controlplane.clock import utcnow
from controlplane.errors import Conflict
from controlplane.schemas.ingest import Text, UtcDatetime
from controlplane.store.models import TaskWorkflow
from controlplane.tasks import operations, submit, workflow_spec, workflows
from controlplane.tasks.operations import TaskRuntime
from controlplane.web import DB_SESSION, READ_SESSION

router = APIRouter(tags=["tasks"])

Signal = Literal["SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1"]
Reason = Text | None


class TaskSubmit(BaseModel):  # type: ignore[no-redef]  # pydantic plugin: the field is named like its __init__ **kwargs
    name: str = Field(min_length=1, max_length=submit.MAX_NAME, description="A registered task's name.")
    args: list[Any] = Field(default_factory=list, description="Positional arguments (plain JSON).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments (plain JSON).")
    queue: str | None = Field(
        None, max_length=200, description="A declared queue; by default the task's route."
    )
    priority: int | None = Field(None, description="0 to the queue's x-max-priority; higher runs first.")
    countdown: float | None = Field(None, description="Seconds to wait before running it.")


class TaskSubmitted(BaseModel):
    task_id: str
    queue: str
    priority: int


class WorkflowIn(BaseModel):
    name: str = Field(description="What the workflow is, 1 to 100 characters.")
    steps: list[Any] = Field(description="[{id, task, args?, kwargs?, queue?, priority?, immutable?}]")
    edges: list[Any] = Field(
        default_factory=list, description="[[from, to], ...]: `to` gets `from`'s result."
    )


class StepOut(BaseModel):
    id: str
    task: str
    task_id: str
    depends_on: list[str]
    state: str
    reason: str | None
    result: Any
    updated_at: UtcDatetime


class WorkflowOut(BaseModel):
    id: uuid.UUID
    name: str
    state: str
    reason: str | None
    created_by: str
    created_at: UtcDatetime
    updated_at: UtcDatetime
    finished_at: UtcDatetime | None


class WorkflowDetail(WorkflowOut):
    steps: list[StepOut]
    results: dict[str, Any] = Field(
        description="The results of the steps nothing depends on, once they succeeded."
    )


class OperationIn(BaseModel):
    reason: Reason = Field(None, max_length=2000, description="Why (kept in the audit log).")


class CancelIn(OperationIn):
    terminate: bool = Field(False, description="Also stop it if it is running.")
    signal: Signal = "SIGTERM"


class RetryFailedIn(OperationIn):
    name: str = Field(min_length=1, max_length=submit.MAX_NAME)
    since: datetime = Field(description="ISO 8601; every failure of the name since then is retried.")


class ReplayIn(OperationIn):
    task_ids: list[str] | None = Field(None, max_length=operations.MAX_TASK_IDS)
    name: str | None = Field(None, max_length=submit.MAX_NAME, description="Every dead letter of this task.")


class DiscardIn(OperationIn):
    task_ids: list[str] = Field(min_length=1, max_length=operations.MAX_TASK_IDS)


def _runtime(request: Request) -> TaskRuntime:
    runtime = request.app.state.task_runtime
    if runtime is None:
        raise Conflict(
            "no Celery broker is configured: set COREPLANE_RABBITMQ__URL or COREPLANE_TASKS__BROKER_URL"
        )
    return runtime


def _operation(session: Session, who: Principal, kind: str, params: dict, reason: str | None) -> ActionOut:
    return request_action(session, who, kind, operations.TARGET, params, reason)


def _detail(session: Session, workflow: TaskWorkflow) -> WorkflowDetail:
    steps = [
        StepOut(
            id=s.step,
            task=s.task,
            task_id=s.task_id,
            depends_on=s.depends_on,
            state=s.state,
            reason=s.reason,
            result=s.result,
            updated_at=s.updated_at,
        )
        for s in workflows.steps_of(session, workflow)
    ]
    return WorkflowDetail(
        **WorkflowOut.model_validate(workflow, from_attributes=True).model_dump(),
        steps=steps,
        results=workflows.results(session, workflow),
    )


@router.post("/tasks", status_code=202, response_model=TaskSubmitted)
def submit_task(request: Request, task_in: TaskSubmit, who: Principal = Depends(OPERATOR)) -> TaskSubmitted:
    runtime = _runtime(request)
    queue, priority = submit.route(runtime.tasks, task_in.name, task_in.queue, task_in.priority)
    task_id = submit.submit(runtime.app, runtime.tasks, **task_in.model_dump())
    return TaskSubmitted(task_id=task_id, queue=queue, priority=priority)


@router.post("/tasks/workflows", status_code=202, response_model=WorkflowDetail)
def create_workflow(
    request: Request,
    workflow_in: WorkflowIn,
    who: Principal = Depends(OPERATOR),
    session: Session = DB_SESSION,
) -> WorkflowDetail:
    runtime = _runtime(request)
    spec = workflow_spec.parse(workflow_in.model_dump(), runtime.tasks, submit.known_tasks(runtime.app))
    workflow = workflows.create(session, spec, actor=f"{who.kind}:{who.name}", now=utcnow())
    return _detail(session, workflow)


@router.get("/tasks/workflows", response_model=list[WorkflowOut], dependencies=[Depends(VIEWER)])
def list_workflows(
    session: Session = READ_SESSION,
    state: str | None = Query(None, description="running, succeeded, failed, cancelled"),
    limit: int = Query(50, ge=1, le=500),
) -> list[WorkflowOut]:
    return [
        WorkflowOut.model_validate(w, from_attributes=True)
        for w in workflows.list_workflows(session, state=state, limit=limit)
    ]


@router.get("/tasks/workflows/{workflow_id}", response_model=WorkflowDetail, dependencies=[Depends(VIEWER)])
def read_workflow(workflow_id: uuid.UUID, session: Session = READ_SESSION) -> WorkflowDetail:
    return _detail(session, workflows.get(session, workflow_id))


@router.post("/tasks/workflows/{workflow_id}/cancel", status_code=202, response_model=ActionOut)
def cancel_workflow(
    workflow_id: uuid.UUID,
    body: OperationIn | None = None,
    who: Principal = Depends(OPERATOR),
    session: Session = DB_SESSION,
) -> ActionOut:
    workflow = workflows.get(session, workflow_id)
    if workflow.state != "running":
        raise Conflict(
            f"workflow {workflow_id} is {workflow.state}; only a running workflow can be cancelled"
        )
    reason = body.reason if body else None
    return _operation(session, who, "tasks.workflow_cancel", {"workflow_id": str(workflow_id)}, reason)


@router.post("/tasks/retry-failed", status_code=202, response_model=ActionOut)
def retry_failed(
    body: RetryFailedIn, who: Principal = Depends(OPERATOR), session: Session = DB_SESSION
) -> ActionOut:
    since = body.since.isoformat() + ("" if body.since.tzinfo else "Z")
    return _operation(session, who, "tasks.retry_failed", {"name": body.name, "since": since}, body.reason)


@router.post("/tasks/queues/{queue}/purge", status_code=202, response_model=ActionOut)
def purge_queue(
    request: Request,
    queue: str,
    body: OperationIn | None = None,
    who: Principal = Depends(OPERATOR),
    session: Session = DB_SESSION,
) -> ActionOut:
    operations.check_queue(request.app.state.settings.tasks, queue)
    return _operation(session, who, "tasks.purge", {"queue": queue}, body.reason if body else None)


@router.get("/tasks/dead-letters", dependencies=[Depends(VIEWER)])
def list_dead_letters(request: Request, limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
    runtime = _runtime(request)
    return operations.dead_letters(runtime, limit=limit)


@router.post("/tasks/dead-letters/replay", status_code=202, response_model=ActionOut)
def replay_dead_letters(
    body: ReplayIn, who: Principal = Depends(OPERATOR), session: Session = DB_SESSION
) -> ActionOut:
    params: dict[str, Any] = {"task_ids": body.task_ids} if body.task_ids is not None else {}
    if body.name is not None:
        params["name"] = body.name
    return _operation(session, who, "tasks.replay", params, body.reason)


@router.post("/tasks/dead-letters/discard", status_code=202, response_model=ActionOut)
def discard_dead_letters(
    body: DiscardIn, who: Principal = Depends(OPERATOR), session: Session = DB_SESSION
) -> ActionOut:
    return _operation(session, who, "tasks.discard", {"task_ids": body.task_ids}, body.reason)


@router.post("/tasks/{task_id}/cancel", status_code=202, response_model=ActionOut)
def cancel_task(
    task_id: str,
    body: CancelIn | None = None,
    who: Principal = Depends(OPERATOR),
    session: Session = DB_SESSION,
) -> ActionOut:
    body = body or CancelIn()
    params = {"task_id": task_id, "terminate": body.terminate, "signal": body.signal}
    return _operation(session, who, "tasks.cancel", params, body.reason)


@router.post("/tasks/{task_id}/retry", status_code=202, response_model=ActionOut)
def retry_task(
    task_id: str,
    body: OperationIn | None = None,
    who: Principal = Depends(OPERATOR),
    session: Session = DB_SESSION,
) -> ActionOut:
    return _operation(session, who, "tasks.retry", {"task_id": task_id}, body.reason if body else None)
