"""`python -m bench.tasks_variant '<json>' [worker args]`: `coreplane worker` with some of
coreplane's Celery settings put back to Celery's defaults, to find what a throughput gap
against bare Celery comes from (bench/tasks.py, BENCH_TASKS_DIAGNOSE=1). The JSON holds
Celery settings for ``app.conf`` plus four switches: "events" (false: no -E),
"loglevel", "plain_queues" (true: the queues without x-max-priority and dead letters) and
"time_limits" (false: no soft or hard limit on the tasks)."""

from __future__ import annotations

import json
import sys

from kombu import Queue

from controlplane.settings import load_settings
from controlplane.tasks import make_celery, topology


def main(argv: list[str]) -> None:
    variant, args = json.loads(argv[0]), argv[1:]
    settings = load_settings()
    app = make_celery(settings)
    events = variant.pop("events", True)
    loglevel = variant.pop("loglevel", "INFO")
    if variant.pop("plain_queues", False):
        app.conf.task_queues = [Queue(name, routing_key=name) for name in settings.tasks.queues]
    else:
        topology.declare(app, settings.tasks, list(settings.tasks.queues))
    if not variant.pop("time_limits", True):
        for task in app.tasks.values():  # the limits are attributes of coreplane's task class
            type(task).soft_time_limit = type(task).time_limit = None
    app.conf.update(variant)
    app.worker_main(["worker", *args, f"--loglevel={loglevel}", *(["-E"] if events else [])])


if __name__ == "__main__":
    main(sys.argv[1:])
