"""Task operations as actions: retry, retry every failure of a name, cancel, purge a queue,
replay or discard dead letters, cancel a workflow. They go through the action spine (an
Action row, its audit trail, the console's preview-and-confirm) like every change, and the
control plane carries them out itself on the leader, where ``advance`` takes each pending
one, does it against the broker and ends it succeeded or failed in the same round.

``PARAM_CHECKS`` refuse bad parameters before an action is stored (actions/plans.py
registers them); ``describe`` says in plain words what an operation will do, for the
console's preview. Without a broker on the leader, the plans in ``PLANS`` fail them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.actions import carried
from controlplane.actions.carried import OperationFailed, Outcome
from controlplane.errors import Conflict, NotFound, Rejected
from controlplane.schemas.ingest import utc_naive
from controlplane.settings import TasksSettings
from controlplane.store.models import Action, TaskRun, TaskWorkflow
from controlplane.tasks import dead, history, submit, workflows

KINDS = (
    "tasks.retry",
    "tasks.retry_failed",
    "tasks.cancel",
    "tasks.purge",
    "tasks.replay",
    "tasks.discard",
    "tasks.workflow_cancel",
)
TARGET = "celery"
SIGNALS = ("SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1")
MAX_TASK_IDS = 1000  # ids in one replay or discard
MAX_RETRY_FAILED = 500  # failures one "retry every failure of a name" re-sends
MAX_ID = 155


@dataclass(frozen=True)
class TaskRuntime:
    """What the leader needs to carry out task operations and move workflows on."""

    app: Celery
    tasks: TasksSettings


# -- parameters ------------------------------------------------------------------------


def _bad(name: str, why: str) -> Rejected:
    return Rejected.field(f"params.{name}: {why}", f"params.{name}", why, kind="body")


def _task_id(params: dict, name: str = "task_id") -> str:
    value = params.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID or not value.isprintable():
        raise _bad(name, f"must be a task id of 1 to {MAX_ID} printable characters")
    return value


def _task_ids(params: dict) -> list[str]:
    ids = params.get("task_ids")
    if not isinstance(ids, list) or not 0 < len(ids) <= MAX_TASK_IDS:
        raise _bad("task_ids", f"must be a list of 1 to {MAX_TASK_IDS} task ids")
    for item in ids:
        _task_id({"task_ids": item}, "task_ids")
    return ids


def _check_ids(params: dict) -> None:
    _task_ids(params)


def _name(params: dict) -> str:
    value = params.get("name")
    if not isinstance(value, str) or not 0 < len(value) <= submit.MAX_NAME:
        raise _bad("name", f"must be a task name of 1 to {submit.MAX_NAME} characters")
    return value


def parse_since(value: Any) -> datetime:
    """An ISO 8601 moment as naive UTC (the store's convention); Rejected naming params.since."""
    try:
        return utc_naive(datetime.fromisoformat(str(value)))
    except ValueError:
        raise _bad("since", f"must be an ISO 8601 time such as 2026-11-29T10:00:00Z, not {value!r}") from None


def _check_retry(params: dict) -> None:
    _task_id(params)


def _check_cancel(params: dict) -> None:
    _task_id(params)
    if not isinstance(params.get("terminate", False), bool):
        raise _bad("terminate", "must be true or false")
    if params.get("signal", "SIGTERM") not in SIGNALS:
        raise _bad("signal", f"must be one of {', '.join(SIGNALS)}, not {params.get('signal')!r}")


def _check_retry_failed(params: dict) -> None:
    _name(params)
    if not isinstance(params.get("since"), str):
        raise _bad("since", "must be an ISO 8601 time such as 2026-11-29T10:00:00Z")
    parse_since(params["since"])


def _check_purge(params: dict) -> None:
    queue = params.get("queue")
    if not isinstance(queue, str) or not 0 < len(queue) <= 200:
        raise _bad("queue", "must be a queue name of 1 to 200 characters")


def _check_replay(params: dict) -> None:
    if ("task_ids" in params) == ("name" in params):
        raise _bad("task_ids", "give either task_ids (a list) or name (every dead letter of that task)")
    _task_ids(params) if "task_ids" in params else _name(params)


def _check_workflow(params: dict) -> None:
    try:
        uuid.UUID(str(params.get("workflow_id")))
    except ValueError:
        raise _bad(
            "workflow_id", f"must be a workflow id (a UUID), not {params.get('workflow_id')!r}"
        ) from None


PARAM_CHECKS: dict[str, Callable[[dict], None]] = {
    "tasks.retry": _check_retry,
    "tasks.retry_failed": _check_retry_failed,
    "tasks.cancel": _check_cancel,
    "tasks.purge": _check_purge,
    "tasks.replay": _check_replay,
    "tasks.discard": _check_ids,
    "tasks.workflow_cancel": _check_workflow,
}


def check_queue(tasks: TasksSettings, queue: str) -> None:
    """A queue the settings declare (the API checks before creating a purge)."""
    if queue not in tasks.queues:
        raise Rejected.field(
            f"unknown queue {queue!r}; declared: {', '.join(tasks.queues)}",
            "queue",
            "unknown queue",
            kind="path",
        )


# -- carrying them out -------------------------------------------------------------------


def _params(action: Action) -> dict[str, Any]:
    return action.params or {}


def dead_letters(runtime: TaskRuntime, *, limit: int = 100) -> list[dict]:
    """The dead-lettered tasks, oldest first (GET /api/v1/tasks/dead-letters)."""
    return dead.list_dead(runtime.app, runtime.tasks, limit=limit)


def _resend(runtime: TaskRuntime, task_id: str) -> str:
    """Send a finished task again, under a new id whose parent is the old one, from what
    the result backend kept of it (``result_extended``: name, args, kwargs, queue)."""
    meta = runtime.app.backend.get_task_meta(task_id)
    if meta.get("status") not in history.FINISHED or not meta.get("name"):
        state = meta.get("status")
        raise OperationFailed(
            f"task {task_id} is not in the dead-letter queue and the result backend has no finished record "
            f"of it ({state}); results are kept {runtime.app.conf.result_expires}"
        )
    queue = meta.get("queue") if meta.get("queue") in runtime.tasks.queues else None
    try:
        return submit.submit(
            runtime.app,
            runtime.tasks,
            name=meta["name"],
            args=meta.get("args") or [],
            kwargs=meta.get("kwargs") or {},
            queue=queue,
            parent_id=task_id,
        )
    except Rejected as exc:
        raise OperationFailed(f"task {task_id} cannot be sent again: {exc}") from None


def _retry_ids(runtime: TaskRuntime, task_ids: list[str]) -> dict[str, Any]:
    """Replay those in the dead-letter queue, re-send the others from the result backend."""
    if not task_ids:
        return {"replayed": [], "resent": {}, "not_retried": []}
    replayed = dead.replay(runtime.app, runtime.tasks, task_ids=set(task_ids), limit=len(task_ids))
    resent, missing = {}, []
    for task_id in task_ids:
        if task_id in replayed:
            continue
        try:
            resent[task_id] = _resend(runtime, task_id)
        except OperationFailed as exc:
            missing.append(str(exc))
    return {"replayed": sorted(replayed), "resent": resent, "not_retried": missing}


def _retry(session: Session, runtime: TaskRuntime, action: Action, now: datetime) -> Outcome:
    task_id = _params(action)["task_id"]
    done = _retry_ids(runtime, [task_id])
    if done["not_retried"]:
        raise OperationFailed(done["not_retried"][0])
    if done["replayed"]:
        return f"task {task_id} replayed from the dead-letter queue", done
    return f"task {task_id} sent again as {done['resent'][task_id]}", done


def failures_since(session: Session, runtime: TaskRuntime | None, name: str, since: datetime) -> list[str]:
    """Ids of the failures of ``name`` since ``since``: the store's task history, then the
    dead-letter queue (when the broker is at hand), at most MAX_RETRY_FAILED."""
    runs = session.scalars(
        select(TaskRun.task_id)
        .where(TaskRun.name == name, TaskRun.state == "FAILURE", TaskRun.finished_at >= since)
        .order_by(TaskRun.finished_at)
        .limit(MAX_RETRY_FAILED)
    )
    ids = list(dict.fromkeys(runs))
    if runtime is not None and len(ids) < MAX_RETRY_FAILED:
        for letter in dead.list_dead(runtime.app, runtime.tasks, limit=MAX_RETRY_FAILED):
            failed_at = letter.get("failed_at")
            if isinstance(failed_at, datetime):
                failed_at = utc_naive(failed_at)
            if (
                letter.get("name") == name
                and (failed_at is None or failed_at >= since)
                and letter["task_id"] not in ids
            ):
                ids.append(letter["task_id"])
    return ids[:MAX_RETRY_FAILED]


def _retry_failed(session: Session, runtime: TaskRuntime, action: Action, now: datetime) -> Outcome:
    name, since = _params(action)["name"], parse_since(_params(action)["since"])
    ids = failures_since(session, runtime, name, since)
    done = _retry_ids(runtime, ids)
    count = len(done["replayed"]) + len(done["resent"])
    return f"{count} of {len(ids)} failure(s) of {name} since {_params(action)['since']} retried", done


def _cancel(session: Session, runtime: TaskRuntime, action: Action, now: datetime) -> Outcome:
    params = _params(action)
    terminate, signal = bool(params.get("terminate", False)), params.get("signal", "SIGTERM")
    runtime.app.control.revoke(params["task_id"], terminate=terminate, signal=signal)
    how = f"terminated with {signal} if running" if terminate else "revoked (it will not start)"
    return f"task {params['task_id']} {how}", {
        "task_id": params["task_id"],
        "terminate": terminate,
        "signal": signal,
    }


def _purge(session: Session, runtime: TaskRuntime, action: Action, now: datetime) -> Outcome:
    queue = _params(action)["queue"]
    if queue not in runtime.tasks.queues:
        raise OperationFailed(f"unknown queue {queue!r}; declared: {', '.join(runtime.tasks.queues)}")
    with runtime.app.connection_for_write() as conn:
        purged = conn.default_channel.queue_purge(queue) or 0
    return f"{purged} message(s) purged from {queue}", {"queue": queue, "purged": purged}


def _replay(session: Session, runtime: TaskRuntime, action: Action, now: datetime) -> Outcome:
    ids, name = _params(action).get("task_ids"), _params(action).get("name")
    replayed = dead.replay(runtime.app, runtime.tasks, task_ids=set(ids) if ids else None, name=name)
    return f"{len(replayed)} dead letter(s) replayed", {"replayed": replayed}


def _discard(session: Session, runtime: TaskRuntime, action: Action, now: datetime) -> Outcome:
    discarded = dead.discard(runtime.app, runtime.tasks, task_ids=set(_params(action)["task_ids"]))
    return f"{len(discarded)} dead letter(s) discarded", {"discarded": discarded}


def _workflow_cancel(session: Session, runtime: TaskRuntime, action: Action, now: datetime) -> Outcome:
    workflow_id = uuid.UUID(_params(action)["workflow_id"])
    try:
        revoked = workflows.cancel(
            session, runtime.app, workflow_id, actor=action.requested_by, reason=action.reason, now=now
        )
    except (NotFound, Conflict) as exc:
        raise OperationFailed(str(exc)) from None
    return f"workflow {workflow_id} cancelled; {len(revoked)} step(s) revoked", {"revoked": revoked}


CARRY_OUT: dict[str, Callable[[Session, TaskRuntime, Action, datetime], Outcome]] = {
    "tasks.retry": _retry,
    "tasks.retry_failed": _retry_failed,
    "tasks.cancel": _cancel,
    "tasks.purge": _purge,
    "tasks.replay": _replay,
    "tasks.discard": _discard,
    "tasks.workflow_cancel": _workflow_cancel,
}


def _broker_errors() -> tuple[type[BaseException], ...]:
    """What a broker or result backend that is down raises: the action fails with it."""
    from amqp.exceptions import AMQPError  # type: ignore[import-untyped]
    from celery.exceptions import CeleryError
    from kombu.exceptions import KombuError
    from redis.exceptions import RedisError

    return (OSError, AMQPError, KombuError, RedisError, CeleryError)


def carry_out(session: Session, runtime: TaskRuntime, action: Action, now: datetime) -> None:
    """Do one pending task operation and end its action, audited (actions/carried.py)."""
    carried.carry_out(
        session, action, now, lambda: CARRY_OUT[action.kind](session, runtime, action, now),
        target=TARGET, backend_errors=_broker_errors(), backend="the broker or result backend",
    )  # fmt: skip


def advance(session: Session, runtime: TaskRuntime, *, now: datetime) -> int:
    """Carry out every pending task operation (the leader's control loop, before the other
    plans); returns how many."""
    actions = carried.pending(session, KINDS)
    for action in actions:
        carry_out(session, runtime, action, now)
    return len(actions)


NO_BROKER = "the leader has no Celery broker: set COREPLANE_RABBITMQ__URL or COREPLANE_TASKS__BROKER_URL"
PLANS: dict[str, Callable[[Session, Action, datetime], None]] = dict.fromkeys(
    KINDS, carried.unavailable(NO_BROKER)
)


# -- the preview -------------------------------------------------------------------------


def _short(task_id: str) -> str:
    return task_id[:8] + ".." if len(task_id) > 10 else task_id


def _known(session: Session, task_id: str) -> str:
    """ "1f2e.. (jobs.add) on queue celery" from the task history, when it has the task."""
    run = session.get(TaskRun, task_id)
    if run is None or not run.name:
        return f"task {_short(task_id)}"
    return f"task {_short(task_id)} ({run.name}, {run.state.lower()}) from queue {run.queue or '?'}"


def describe(session: Session, kind: str, params: dict) -> list[str]:
    """The steps an operation will take, in plain words, for the console's preview."""
    if kind == "tasks.retry":
        known = _known(session, params.get("task_id", ""))
        return [
            f"Replay {known} from the dead-letter queue if it is there,",
            "else re-send it with its arguments from the result backend, under a new id linked to it",
        ]
    if kind == "tasks.retry_failed":
        name, since = params.get("name", ""), params.get("since", "")
        try:
            count = len(failures_since(session, None, name, parse_since(since)))
        except Rejected:
            count = 0
        return [
            f"Find every failure of {name} since {since}: {count} in the task history so far "
            f"(plus any in the dead-letter queue), at most {MAX_RETRY_FAILED}",
            "Replay each from the dead-letter queue, or re-send it from the result backend",
        ]
    if kind == "tasks.cancel":
        known = _known(session, params.get("task_id", ""))
        if params.get("terminate"):
            return [
                f"Revoke {known}: a worker will not start it",
                f"If it is running, send {params.get('signal', 'SIGTERM')} to the process running it",
            ]
        return [f"Revoke {known}: a worker will not start it (a running one finishes)"]
    if kind == "tasks.purge":
        return [f"Delete every message waiting in queue {params.get('queue')}: those tasks will never run"]
    if kind == "tasks.replay":
        which = (
            f"every dead letter of {params['name']}"
            if params.get("name")
            else f"{len(params.get('task_ids') or [])} dead letter(s)"
        )
        return [
            f"Re-publish {which} to its original queue with the same task id and priority",
            "Remove them from the dead-letter queue",
        ]
    if kind == "tasks.discard":
        return [
            f"Delete {len(params.get('task_ids') or [])} dead letter(s) for good: they will not run again"
        ]
    if kind == "tasks.workflow_cancel":
        return _describe_workflow(session, params.get("workflow_id"))
    return [f"Unknown task operation {kind}"]


def _describe_workflow(session: Session, workflow_id: Any) -> list[str]:
    try:
        workflow = session.get(TaskWorkflow, uuid.UUID(str(workflow_id)))
    except ValueError:
        workflow = None
    if workflow is None:
        return [f"No workflow {workflow_id}: nothing to cancel"]
    steps = workflows.steps_of(session, workflow)
    active = sum(s.state in workflows.ACTIVE for s in steps)
    waiting = sum(s.state == "waiting" for s in steps)
    return [
        f"Revoke the {active} queued or running step(s) of workflow {workflow.name} (SIGTERM if running)",
        f"Never send its {waiting} waiting step(s); mark it cancelled",
    ]
