"""The tasks bench/tasks.py runs, registered with ``shared_task`` so the very same code runs
on coreplane's app (`coreplane worker`, COREPLANE_TASKS__MODULES) and on the bare Celery
app (bench/tasks_bare.py). Each records its own time stamps in the Redis list it is given
(BENCH_REDIS_URL): the bench reads them back on the same host clock."""

from __future__ import annotations

import os
import time
from functools import cache

import redis
from celery import shared_task


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@shared_task(name="bench.stamp")
def stamp(key: str, sent: float) -> None:
    """Latency: when the sender sent it (its argument) and when it started, here."""
    started = time.time()
    _redis().rpush(key, f"{sent!r} {started!r}")


@shared_task(name="bench.noop")
def noop(key: str) -> None:
    """Throughput: a task that does nothing but say when it started and finished."""
    started = time.time()
    finished = time.time()
    _redis().rpush(key, f"{started!r} {finished!r}")


@shared_task(name="bench.nothing")
def nothing() -> None:
    """Event capture: its task-succeeded event (the worker's own time stamp) is the finish."""
