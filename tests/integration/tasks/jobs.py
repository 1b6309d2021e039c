"""The tasks the tests' workers run (registered through COREPLANE_TASKS__MODULES, as an
application's are). What they do is recorded in Redis under the key a test passes, so
the test reads it from its own process."""

from __future__ import annotations

import os
import time
from functools import cache

import redis
from celery import shared_task


@cache
def _redis() -> redis.Redis:
    from controlplane.settings import load_settings

    return redis.Redis.from_url(load_settings().redis.url or "redis://127.0.0.1:6379/0")


@shared_task(name="jobs.add")
def add(x: float, y: float) -> float:
    return x + y


@shared_task(name="jobs.total")
def total(values: list[float]) -> float:
    """A chord's body: the sum of its header's results."""
    return sum(values)


@shared_task(name="jobs.record")
def record(key: str, value: object) -> object:
    """Append ``value`` to the Redis list ``key`` (the order tasks ran in)."""
    _redis().rpush(key, str(value))
    return value


@shared_task(name="jobs.started")
def started(key: str) -> float:
    """Record when this attempt started (epoch seconds) in the list ``key``."""
    now = time.time()
    _redis().rpush(key, repr(now))
    return now


@shared_task(name="jobs.flaky", backoff_s=0.5, max_retries=4)
def flaky(key: str, failures: int) -> int:
    """Fail the first ``failures`` attempts (counted in Redis under ``key``), then succeed;
    each attempt's start time goes to ``key:at``."""
    _redis().rpush(f"{key}:at", repr(time.time()))
    attempt = int(_redis().incr(key))
    if attempt <= failures:
        raise ConnectionError(f"attempt {attempt} of {failures} planned failures")
    return attempt


@shared_task(name="jobs.fail", max_retries=1, backoff_s=0.1)
def fail(message: str = "planned failure") -> None:
    raise ValueError(message)


@shared_task(name="jobs.sleep", dont_autoretry_for=(Exception,))
def sleep(key: str, seconds: float) -> float:
    """Record the worker process id in ``key:pid``, then sleep ``seconds``; ``key:done``
    is set only if it ran to the end."""
    _redis().set(f"{key}:pid", os.getpid())
    time.sleep(seconds)
    _redis().set(f"{key}:done", "1")
    return seconds
