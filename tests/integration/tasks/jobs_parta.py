"""Test tasks for the library's behaviours and the dead letters (registered, beside
tests.integration.tasks.jobs, through COREPLANE_TASKS__MODULES). Each records what it did
in Redis under the key the test passes."""

from __future__ import annotations

import os
import time

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from tests.integration.tasks.jobs import _redis


@shared_task(name="parta.urgent")
def urgent(key: str, value: object) -> object:
    """jobs.record under another name, so settings can give it a default priority or route."""
    _redis().rpush(key, str(value))
    return value


@shared_task(name="parta.flaky_plain")
def flaky_plain(key: str, failures: int) -> int:
    """jobs.flaky without overrides: the retry policy is all the settings'."""
    _redis().rpush(f"{key}:at", repr(time.time()))
    attempt = int(_redis().incr(key))
    if attempt <= failures:
        raise ConnectionError(f"attempt {attempt} of {failures} planned failures")
    return attempt


@shared_task(name="parta.flaky_dead", bind=True, max_retries=1, backoff_s=0.05, jitter=False)
def flaky_dead(self, key: str, failures: int) -> int:
    """Fail the first ``failures`` attempts, then succeed; each attempt records
    ``attempt:priority`` (the message's own) in ``key:runs``."""
    attempt = int(_redis().incr(key))
    _redis().rpush(f"{key}:runs", f"{attempt}:{self.request.delivery_info.get('priority')}")
    if attempt <= failures:
        raise ValueError(f"attempt {attempt} of {failures} planned failures")
    return attempt


@shared_task(name="parta.soft", soft_time_limit=0.5, time_limit=30)
def soft(key: str) -> None:
    """Run past its soft limit; record that SoftTimeLimitExceeded reached it."""
    _redis().incr(f"{key}:attempts")
    try:
        time.sleep(20)
    except SoftTimeLimitExceeded:
        _redis().set(f"{key}:soft", "1")
        raise


@shared_task(name="parta.hard", time_limit=1)
def hard(key: str) -> None:
    """Run past its hard limit (no soft one): its process is killed mid-sleep."""
    _redis().incr(f"{key}:attempts")
    _redis().set(f"{key}:pid", os.getpid())
    time.sleep(20)
    _redis().set(f"{key}:done", "1")


@shared_task(name="parta.slow")
def slow(key: str, seconds: float) -> int:
    """Count attempts in ``key:attempts``, record this process in ``key:pid``, sleep,
    then mark ``key:done``."""
    attempt = int(_redis().incr(f"{key}:attempts"))
    _redis().set(f"{key}:pid", os.getpid())
    time.sleep(seconds)
    _redis().set(f"{key}:done", "1")
    return attempt
