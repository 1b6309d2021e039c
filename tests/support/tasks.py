"""Isolated Celery set-ups on the real RabbitMQ and Redis: each test gets its own RabbitMQ
virtual host (its own queues, dead letters and event exchange, so nothing another test
left behind or sends can reach it) and its own Redis key prefix for what its tasks record.

    with task_broker(services) as broker:
        settings = task_settings(services, broker, queues={"celery": 10})
        with task_worker(settings, "--queues=celery") as worker: ...
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery import Celery

from controlplane.settings import Settings
from tests.support.processes import coreplane_bin, coreplane_env
from tests.support.rabbitmq import queue_info, rabbit_vhost
from tests.support.services import ROOT
from tests.support.timing import until

JOBS = "tests.integration.tasks.jobs"  # the test tasks every worker here registers
task_broker = rabbit_vhost  # a task test's broker: a fresh virtual host of its own
__all__ = ["queue_info", "task_broker"]


def task_settings(services: Settings, broker: str, **tasks: Any) -> Settings:
    """The services' settings with the tasks on ``broker`` and the test jobs registered;
    ``tasks`` override COREPLANE_TASKS__* (``queues={...}``, ``retry={...}``, ...)."""
    values = {"broker_url": broker, "modules": [JOBS]} | tasks
    return services.model_copy(
        update={"tasks": services.tasks.model_copy(update=values | _nested(services, values))}
    )


def _nested(services: Settings, values: dict[str, Any]) -> dict[str, Any]:
    """Sub-models given as dicts (``retry={...}``) made into the settings' own types."""
    return {
        "retry": services.tasks.retry.model_copy(update=values["retry"])
    } if isinstance(values.get("retry"), dict) else {}  # fmt: skip


def tasks_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a coreplane process using ``settings``' tasks (and services)."""
    tasks = settings.tasks.model_dump(mode="json")
    values = {
        f"tasks__{k}": v if isinstance(v, str) else json.dumps(v) for k, v in tasks.items() if v is not None
    }
    values |= {f"tasks__retry__{k}": json.dumps(v) for k, v in tasks["retry"].items()}
    values.pop("tasks__retry")
    env = coreplane_env(True, **values, **extra)
    env["PYTHONPATH"] = str(ROOT)  # the test jobs' package
    return env


def celery_app(settings: Settings) -> Celery:
    from controlplane.tasks import make_celery

    return make_celery(settings)


@contextmanager
def task_worker(
    settings: Settings, *args: str, name: str | None = None, log: Path | None = None, concurrency: int = 1
) -> Iterator[subprocess.Popen]:
    """A real `coreplane worker` on ``settings``' broker, answering a ping before this
    yields; terminated (killed after 30 s) on exit."""
    name = name or f"w{secrets.token_hex(3)}@test"
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [coreplane_bin(), "worker", f"--concurrency={concurrency}", f"--name={name}", *args],
        env=tasks_env(settings), stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
    )  # fmt: skip
    app = celery_app(settings)

    def pinged() -> list:
        assert proc.poll() is None, "the Celery worker exited before answering a ping"
        return app.control.ping(timeout=1, destination=[name])

    try:
        until("the Celery worker to answer a ping", pinged, timeout_s=60, every_s=0)
        yield proc
    finally:
        stop_worker(proc)
        if log:
            out.close()  # type: ignore[union-attr]


def stop_worker(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
