"""Enqueue one task by name, checked first: the use case behind POST /api/v1/tasks, the
workflows' steps and the retry of a failed task.

Everything that could make the worker or the broker refuse the message later is refused
here, naming the field to fix, before anything is published: a task no worker would know,
arguments JSON cannot carry (Celery's serializer is JSON), a queue that is not declared, a
priority RabbitMQ would silently cap.
"""

from __future__ import annotations

import json
from typing import Any

from celery import Celery

from controlplane.errors import Rejected, TooLarge
from controlplane.settings import TasksSettings
from controlplane.tasks import topology

MAX_ARGS_BYTES = 256 * 1024  # args and kwargs of one task, as JSON
MAX_DEPTH = 32  # nesting of lists and objects in the arguments
MAX_COUNTDOWN_S = 7 * 86400  # a later run is a schedule's job (task_schedules)
MAX_NAME = 200


def _bad(field: str, why: str) -> Rejected:
    return Rejected.field(f"{field}: {why}", field, why, kind="body")


def known_tasks(app: Celery) -> set[str]:
    """The task names the app's registry holds (settings' modules are imported by make_celery)."""
    return {name for name in app.tasks if not name.startswith("celery.")}


def check_name(app: Celery, name: str, field: str = "name") -> None:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise _bad(field, f"must be a task name of 1 to {MAX_NAME} characters")
    if name not in app.tasks or name.startswith("celery."):
        raise _bad(
            field,
            f"unknown task {name!r}: register it in a module listed in COREPLANE_TASKS__MODULES "
            f"(known: {', '.join(sorted(known_tasks(app))[:20])})",
        )


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (iterative: a hostile depth cannot
    exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, (list, tuple)):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                stack.extend((child, level + 1) for child in item)
    return deepest


def check_arguments(args: Any, kwargs: Any, field: str = "") -> None:
    """Refuse arguments that are not a list and an object of plain JSON within the caps."""
    prefix = f"{field}." if field else ""
    if not isinstance(args, (list, tuple)):
        raise _bad(f"{prefix}args", "must be a list")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise _bad(f"{prefix}kwargs", "must be an object with text keys")
    for name, value in ((f"{prefix}args", list(args)), (f"{prefix}kwargs", kwargs)):
        if _depth(value) > MAX_DEPTH:
            raise _bad(name, f"nests lists or objects more than {MAX_DEPTH} deep")
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise _bad(name, f"must be plain JSON (no NaN, Infinity or Python objects): {exc}") from None
        if len(text) > MAX_ARGS_BYTES:
            raise TooLarge(
                f"{name}: {len(text)} bytes of JSON, over {MAX_ARGS_BYTES}; pass a reference instead",
                [{"kind": "body", "index": None, "field": name, "reason": "too large"}],
            )


def route(
    tasks: TasksSettings, name: str, queue: str | None, priority: int | None, field: str = ""
) -> tuple[str, int]:
    """The queue and priority the task goes with: the caller's, else settings' routes and
    default priorities; Rejected for an undeclared queue or a priority past its x-max-priority."""
    prefix = f"{field}." if field else ""
    queue = queue if queue is not None else topology.queue_for(tasks, name)
    if queue not in tasks.queues:
        raise _bad(f"{prefix}queue", f"unknown queue {queue!r}; declared: {', '.join(tasks.queues)}")
    top = tasks.queues[queue]
    if priority is None:
        return queue, min(topology.priority_for(tasks, name), top)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= top:
        raise _bad(
            f"{prefix}priority", f"must be a whole number from 0 to {top} (queue {queue}'s x-max-priority)"
        )
    return queue, priority


def check_countdown(countdown: float | None) -> None:
    if countdown is None:
        return
    if (
        isinstance(countdown, bool)
        or not isinstance(countdown, (int, float))
        or not 0 <= countdown <= MAX_COUNTDOWN_S
    ):
        raise _bad("countdown", f"must be seconds from 0 to {MAX_COUNTDOWN_S}")


def submit(
    app: Celery,
    tasks: TasksSettings,
    *,
    name: str,
    args: Any = (),
    kwargs: Any = None,
    queue: str | None = None,
    priority: int | None = None,
    countdown: float | None = None,
    task_id: str | None = None,
    parent_id: str | None = None,
) -> str:
    """Publish task ``name`` and return its id; Rejected (naming the field) and nothing sent
    when the name, arguments, queue, priority or countdown is wrong. ``task_id`` pre-assigns
    the id (a workflow's step); ``parent_id`` links a re-sent task to the one it retries."""
    kwargs = {} if kwargs is None else kwargs
    check_name(app, name)
    check_arguments(args, kwargs)
    queue, priority = route(tasks, name, queue, priority)
    check_countdown(countdown)
    result = app.send_task(
        name,
        args=list(args),
        kwargs=kwargs,
        queue=queue,
        priority=priority,
        countdown=countdown,
        task_id=task_id,
        parent_id=parent_id,
        root_id=parent_id,
    )
    return str(result.id)
