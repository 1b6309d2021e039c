"""Queues, routes and priorities from settings: what the app declares on RabbitMQ and
where (and how urgently) each task goes.

Every queue is declared with its ``x-max-priority`` and with the dead-letter exchange, so
a message rejected without requeue (a task that failed for good) lands in the
dead-letter queue. RabbitMQ refuses to redeclare a queue with other arguments
(PRECONDITION_FAILED): a queue made before these arguments must be deleted (or drained
and renamed) once; docs/tasks.md says how.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from kombu import Exchange, Queue

from controlplane.settings import TasksSettings


def dead_letter_exchange(tasks: TasksSettings) -> Exchange:
    return Exchange(f"{tasks.dead_letter_queue}.dlx", type="direct", durable=True)


def dead_letter_queue(tasks: TasksSettings) -> Queue:
    """Where rejected tasks wait for a replay or a discard; no consumer reads it but the
    control plane's replay."""
    return Queue(
        tasks.dead_letter_queue,
        dead_letter_exchange(tasks),
        routing_key=tasks.dead_letter_queue,
        durable=True,
    )


def task_queues(tasks: TasksSettings) -> list[Queue]:
    """The work queues (the first is the default), each on its own direct exchange."""
    return [
        Queue(
            name,
            Exchange(name, type="direct", durable=True),
            routing_key=name,
            durable=True,
            queue_arguments={
                "x-max-priority": top,
                "x-dead-letter-exchange": dead_letter_exchange(tasks).name,
                "x-dead-letter-routing-key": tasks.dead_letter_queue,
            },
        )
        for name, top in tasks.queues.items()
    ]


def default_queue(tasks: TasksSettings) -> str:
    return next(iter(tasks.queues))


def queue_for(tasks: TasksSettings, task_name: str) -> str:
    """The queue a task goes to: an exact route first, then the first glob that matches
    (in the order settings list them), else the default queue."""
    if task_name in tasks.routes:
        return tasks.routes[task_name]
    for pattern, queue in tasks.routes.items():
        if fnmatchcase(task_name, pattern):
            return queue
    return default_queue(tasks)


def priority_for(tasks: TasksSettings, task_name: str) -> int:
    return tasks.priorities.get(task_name, tasks.default_priority)


class Router:
    """Celery router (``task_routes``): queue and default priority by task name. Options
    given to the call (``queue=``, ``priority=``) win over what this returns."""

    def __init__(self, tasks: TasksSettings) -> None:
        self.tasks = tasks

    def __call__(self, name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict:
        return {"queue": queue_for(self.tasks, name), "priority": priority_for(self.tasks, name)}


def check(tasks: TasksSettings) -> None:
    """Refuse, with a ValueError saying what to change, routes to undeclared queues, default
    priorities outside 0-255 and a default soft time limit not below the hard one (it
    could never fire, and would hold the hard limit back: base.py)."""
    unknown = sorted({q for q in tasks.routes.values() if q not in tasks.queues})
    if unknown:
        raise ValueError(
            f"COREPLANE_TASKS__ROUTES sends tasks to undeclared queue(s) {', '.join(unknown)}; "
            f"declare them in COREPLANE_TASKS__QUEUES (now {', '.join(tasks.queues)})"
        )
    wrong = sorted(name for name, priority in tasks.priorities.items() if not 0 <= priority <= 255)
    if wrong:
        raise ValueError(f"COREPLANE_TASKS__PRIORITIES: {', '.join(wrong)} must have a priority of 0-255")
    soft, hard = tasks.soft_time_limit_s, tasks.time_limit_s
    if soft is not None and hard is not None and soft >= hard:
        raise ValueError(
            f"COREPLANE_TASKS__SOFT_TIME_LIMIT_S ({soft:g}) must be below "
            f"COREPLANE_TASKS__TIME_LIMIT_S ({hard:g})"
        )


def declare_dead_letters(app: Any, tasks: TasksSettings) -> None:
    """Declare the dead-letter exchange and queue (idempotent). Workers do it when they
    start; the control plane before it reads the queue."""
    with app.connection_for_write() as conn:
        dead_letter_queue(tasks).bind(conn.default_channel).declare()


def declare(app: Any, tasks: TasksSettings, queues: list[str]) -> None:
    """Declare ``queues`` and the dead letters before a worker starts, turning RabbitMQ's
    PRECONDITION_FAILED (a queue made earlier with other arguments) into a ValueError that
    says what to do."""
    wanted = [q for q in task_queues(tasks) if q.name in queues] + [dead_letter_queue(tasks)]
    with app.connection_for_write() as conn:
        for queue in wanted:
            try:
                with conn.channel() as channel:
                    queue.bind(channel).declare()
            except conn.channel_errors as exc:
                raise ValueError(
                    f"queue {queue.name!r} exists on the broker with other arguments ({exc}); it was "
                    f"made before coreplane declared priorities and dead letters. Drain it, then delete "
                    f"it (rabbitmqctl delete_queue {queue.name}) and start again"
                ) from None
