"""The Celery application behind `coreplane worker`, `coreplane beat`, `coreplane flower`
and every application that imports coreplane's tasks.

Built from settings on demand, never at import time (STYLE.md): the broker is RabbitMQ,
results go to Redis, unless COREPLANE_TASKS__* says otherwise. Applications register
their tasks in their own modules with ``celery.shared_task`` (they get coreplane's base
class) and list the modules in ``COREPLANE_TASKS__MODULES``; every process built here
imports them.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery
from celery.signals import before_task_publish, worker_ready

from controlplane.settings import Settings
from controlplane.tasks import topology
from controlplane.tasks.base import CoreplaneTask


def _stamp_sent_time(properties: dict | None = None, **_: Any) -> None:
    """AMQP ``timestamp`` on every task message, so RabbitMQ's management API reports the
    age of a queue's oldest message (head_message_timestamp)."""
    if properties is not None:
        properties.setdefault("timestamp", int(time.time()))


before_task_publish.connect(_stamp_sent_time, weak=False, dispatch_uid="coreplane-sent-time")


def make_celery(settings: Settings, *, import_modules: bool = True) -> Celery:
    """The configured app; ``import_modules`` registers the tasks of the modules listed in
    settings now (a worker imports them itself at start)."""
    tasks = settings.tasks
    broker = tasks.broker_url or settings.rabbitmq.url
    if not broker:
        raise ValueError("no Celery broker: set COREPLANE_RABBITMQ__URL or COREPLANE_TASKS__BROKER_URL")
    topology.check(tasks)
    base = type(
        "CoreplaneTask",
        (CoreplaneTask,),
        {
            "max_retries": tasks.retry.max_retries,
            "backoff_s": tasks.retry.backoff_s,
            "backoff_max_s": tasks.retry.backoff_max_s,
            "jitter": tasks.retry.jitter,
            # On the class, not in task_(soft_)time_limit: the pool's own default would
            # give back a soft limit the base class drops for a task (base.py).
            "soft_time_limit": tasks.soft_time_limit_s,
            "time_limit": tasks.time_limit_s,
            "__module__": __name__,
        },
    )
    app = Celery(
        "coreplane",
        broker=broker,
        backend=tasks.result_backend or settings.redis.url,
        task_cls=base,
    )
    app.conf.update(
        task_acks_late=True,  # a worker killed mid-task leaves the message for another
        task_reject_on_worker_lost=True,
        # A task that failed for good is rejected, not acked: RabbitMQ dead-letters it (one
        # killed at its hard limit too: base.DeadLetteringRequest).
        task_acks_on_failure=False,
        task_acks_on_timeout=False,
        worker_prefetch_multiplier=tasks.prefetch_multiplier,
        task_send_sent_event=True,
        worker_send_task_events=True,
        # STARTED comes to the history from the task-started event; a result-backend write
        # before every task as well cost 16 % of throughput in the tasks bench.
        task_track_started=False,
        broker_connection_retry_on_startup=True,
        result_expires=24 * 3600,
        result_extended=True,  # name, args and queue kept with the result (the retry button)
        task_queues=topology.task_queues(tasks),
        task_default_queue=topology.default_queue(tasks),
        # Queue and default priority by task name; no task_default_priority, which would
        # become every task's own priority attribute and override the router's per name.
        task_routes=(topology.Router(tasks),),
        imports=tuple(tasks.modules),
    )

    @app.task(name="coreplane.ping", shared=False)  # each app its own (no warning when a process builds two)
    def ping() -> str:
        return "pong"

    @app.task(name="coreplane.sleep", shared=False)
    def sleep(seconds: float) -> float:
        """Hold a worker process for ``seconds`` (at most 60): a load drill for scaling rules."""
        seconds = min(max(float(seconds), 0.0), 60.0)
        time.sleep(seconds)
        return seconds

    def declare_dead_letters(sender: Any = None, **_: Any) -> None:
        if sender is not None and sender.app is app:
            topology.declare_dead_letters(app, tasks)

    worker_ready.connect(declare_dead_letters, weak=False)

    if import_modules and tasks.modules:
        app.loader.import_default_modules()
    return app
