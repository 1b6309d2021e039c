"""Workflows: a checked spec (workflow_spec.py) stored as one TaskWorkflow with a
TaskWorkflowStep per step, each with its task id assigned up front, and moved along by the
leader's control loop.

Only the leader publishes a workflow's steps (``advance``): a step is sent once every
parent succeeded, with their results prepended to its arguments. The steps' states are
read from the result backend (Celery's AsyncResult), so a workflow moves on without the
event capture. A failed step stops everything that depends on it, transitively; the
workflow ends "failed" with that reason once nothing can progress, "succeeded" when every
step did. Use cases take the session first and never commit.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.errors import Conflict, NotFound, Rejected
from controlplane.notify import TASKS, announce
from controlplane.settings import TasksSettings
from controlplane.store.models import TaskRun, TaskWorkflow, TaskWorkflowStep
from controlplane.tasks import submit
from controlplane.tasks.workflow_spec import Spec, order

ACTIVE = frozenset({"queued", "running"})
ENDED = frozenset({"succeeded", "failed", "stopped", "cancelled"})
MAX_RESULT_BYTES = 64 * 1024  # a step's result kept in the store (the backend keeps it whole)
MAX_REASON = 2000
ADVANCE_BATCH = 100  # running workflows looked at per round, least recently moved first
# Celery's state -> the step's
FROM_CELERY = {
    "PENDING": "queued",
    "RECEIVED": "running",
    "STARTED": "running",
    "RETRY": "running",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "cancelled",
    "REJECTED": "failed",
}


def create(session: Session, spec: Spec, *, actor: str, now: datetime) -> TaskWorkflow:
    """Store a checked spec as a running workflow whose steps all wait; the leader sends them."""
    workflow = TaskWorkflow(
        name=spec.name, state="running", spec=spec.as_dict(), created_by=actor, created_at=now, updated_at=now
    )
    session.add(workflow)
    session.flush()
    for step in spec.steps:
        session.add(
            TaskWorkflowStep(
                workflow_id=workflow.id,
                step=step.id,
                task=step.task,
                task_id=str(uuid.uuid4()),
                depends_on=spec.parents(step.id),
                state="waiting",
                updated_at=now,
            )
        )
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="task.workflow.create",
        target=str(workflow.id),
        details={"name": spec.name, "steps": len(spec.steps)},
    )
    announce(session, TASKS)
    return workflow


def get(session: Session, workflow_id: uuid.UUID) -> TaskWorkflow:
    workflow = session.get(TaskWorkflow, workflow_id)
    if workflow is None:
        raise NotFound(f"no workflow {workflow_id}")
    return workflow


def steps_of(session: Session, workflow: TaskWorkflow) -> list[TaskWorkflowStep]:
    """The steps in the spec's order."""
    rows = {
        s.step: s
        for s in session.scalars(select(TaskWorkflowStep).where(TaskWorkflowStep.workflow_id == workflow.id))
    }
    return [rows[s["id"]] for s in workflow.spec["steps"] if s["id"] in rows]


def list_workflows(session: Session, *, state: str | None = None, limit: int = 100) -> list[TaskWorkflow]:
    query = select(TaskWorkflow).order_by(TaskWorkflow.created_at.desc()).limit(limit)
    if state is not None:
        query = query.where(TaskWorkflow.state == state)
    return list(session.scalars(query))


def results(session: Session, workflow: TaskWorkflow) -> dict[str, Any]:
    """The final results: each step no other step depends on, by step id."""
    steps = steps_of(session, workflow)
    inner = {p for s in steps for p in s.depends_on}
    return {s.step: s.result for s in steps if s.step not in inner and s.state == "succeeded"}


def _set(step: TaskWorkflowStep, state: str, now: datetime, reason: str | None = None) -> None:
    step.state, step.updated_at = state, now
    if reason is not None:
        step.reason = reason[:MAX_REASON]


def _storable(value: Any) -> Any:
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return {"unstorable": repr(value)[:MAX_REASON]}
    return value if len(text) <= MAX_RESULT_BYTES else {"truncated": True, "bytes": len(text)}


def _describe(exc: Any) -> str:
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)


def _observe(app: Celery, step: TaskWorkflowStep, now: datetime, running: set[str]) -> None:
    """Take the step's state from the result backend, which records outcomes only
    (track_started is off); ``running`` are the task ids the history saw start."""
    found = AsyncResult(step.task_id, app=app)
    state = FROM_CELERY.get(found.state, "running")
    if state == "queued" and step.task_id in running:
        state = "running"
    if state == step.state:
        return
    if state == "succeeded":
        step.result = _storable(found.result)
        _set(step, state, now)
    elif state == "failed":
        _set(step, state, now, _describe(found.result))
    elif state == "cancelled":
        _set(step, state, now, "revoked")
    else:
        _set(step, state, now)


def _stop_dependents(steps: dict[str, TaskWorkflowStep], spec: dict[str, Any], now: datetime) -> None:
    """A waiting step with a parent that failed, stopped or was cancelled never runs; it
    says which failed step is to blame (in an order where parents come first)."""
    edges = [tuple(e) for e in spec["edges"]]
    for step_id in order(list(steps), edges):
        step = steps[step_id]
        if step.state != "waiting":
            continue
        for parent_id in step.depends_on:
            parent = steps[parent_id]
            if parent.state == "failed":
                _set(step, "stopped", now, f"step {parent_id} failed: {parent.reason}")
            elif parent.state in ("stopped", "cancelled"):
                _set(
                    step,
                    "stopped",
                    now,
                    parent.reason if parent.state == "stopped" else f"step {parent_id} was cancelled",
                )
            else:
                continue
            break


def _send(
    app: Celery,
    tasks: TasksSettings,
    step: TaskWorkflowStep,
    spec_step: dict[str, Any],
    steps: dict[str, TaskWorkflowStep],
    now: datetime,
) -> None:
    """Publish a step whose parents all succeeded, their results first unless immutable."""
    args = list(spec_step["args"])
    if step.depends_on and not spec_step["immutable"]:
        # The results whole from the backend (the store keeps capped copies).
        found = [AsyncResult(steps[p].task_id, app=app).result for p in step.depends_on]
        args = [found[0] if len(found) == 1 else found, *args]
    try:
        submit.submit(
            app,
            tasks,
            name=step.task,
            args=args,
            kwargs=spec_step["kwargs"],
            queue=spec_step["queue"],
            priority=spec_step["priority"],
            task_id=step.task_id,
        )
    except Rejected as exc:  # its parents' results are not JSON, or the task is gone since
        _set(step, "failed", now, f"not sent: {exc}")
        return
    _set(step, "queued", now)


def _finish(workflow: TaskWorkflow, steps: list[TaskWorkflowStep], now: datetime) -> None:
    if any(s.state not in ENDED for s in steps):
        return
    failed = next((s for s in steps if s.state == "failed"), None)
    if failed is None and all(s.state == "succeeded" for s in steps):
        workflow.state, workflow.reason = "succeeded", None
    else:
        workflow.state = "failed"
        if failed is not None:
            why = f"step {failed.step} failed: {failed.reason}"
        else:
            blamed = next(s for s in steps if s.state == "cancelled")
            why = f"step {blamed.step} was cancelled ({blamed.reason})"
        workflow.reason = why[:MAX_REASON]
    workflow.finished_at = now


def advance_one(
    session: Session, app: Celery, tasks: TasksSettings, workflow: TaskWorkflow, now: datetime
) -> bool:
    """One look at a running workflow: observe, stop, send, finish. Returns whether it moved."""
    rows = steps_of(session, workflow)
    before = [(s.state, s.reason) for s in rows]
    steps = {s.step: s for s in rows}
    active = [s.task_id for s in rows if s.state in ACTIVE]
    started = TaskRun.state.in_(("RECEIVED", "STARTED", "RETRY"))
    running = set(session.scalars(select(TaskRun.task_id).where(TaskRun.task_id.in_(active), started)))
    for step in rows:
        if step.state in ACTIVE:
            _observe(app, step, now, running)
    _stop_dependents(steps, workflow.spec, now)
    spec_steps = {s["id"]: s for s in workflow.spec["steps"]}
    for step in rows:
        if step.state == "waiting" and all(steps[p].state == "succeeded" for p in step.depends_on):
            _send(app, tasks, step, spec_steps[step.step], steps, now)
    _finish(workflow, rows, now)
    moved = before != [(s.state, s.reason) for s in rows]
    if moved:
        workflow.updated_at = now
        announce(session, TASKS)
    return moved


def advance(session: Session, app: Celery, tasks: TasksSettings, *, now: datetime) -> int:
    """Move every running workflow on (the leader's control loop, each round); returns how
    many moved. At most ADVANCE_BATCH per round, the least recently moved first."""
    query = (
        select(TaskWorkflow)
        .where(TaskWorkflow.state == "running")
        .order_by(TaskWorkflow.updated_at)
        .limit(ADVANCE_BATCH)
    )
    moved = 0
    for workflow in list(session.scalars(query)):
        moved += advance_one(session, app, tasks, workflow, now)
    return moved


def cancel(
    session: Session, app: Celery, workflow_id: uuid.UUID, *, actor: str, reason: str | None, now: datetime
) -> list[str]:
    """Revoke the workflow's queued and running steps (a running one is terminated), never
    send its waiting ones, and mark it cancelled with who and why. Returns the revoked task ids."""
    workflow = get(session, workflow_id)
    if workflow.state != "running":
        raise Conflict(
            f"workflow {workflow_id} is {workflow.state}; only a running workflow can be cancelled"
        )
    rows = steps_of(session, workflow)
    for step in rows:
        if step.state in ACTIVE:
            _observe(app, step, now, set())  # one that just finished keeps its outcome
    revoked = [s.task_id for s in rows if s.state in ACTIVE]
    if revoked:
        app.control.revoke(revoked, terminate=True, signal="SIGTERM")
    why = f"cancelled by {actor}" + (f": {reason}" if reason else "")
    for step in rows:
        if step.state in ACTIVE or step.state == "waiting":
            _set(step, "cancelled", now, why)
    workflow.state, workflow.reason = "cancelled", why[:MAX_REASON]
    workflow.updated_at = workflow.finished_at = now
    audit.record(
        session,
        actor=actor,
        action="task.workflow.cancel",
        target=str(workflow.id),
        details={"reason": reason, "revoked": revoked},
    )
    announce(session, TASKS)
    return revoked
