"""Test tasks for the task operations (retry): registered besides tests.integration.tasks.jobs."""

from __future__ import annotations

from celery import shared_task

from tests.integration.tasks.jobs import _redis


@shared_task(name="partc.fail_first", max_retries=0)
def fail_first(key: str, failures: int) -> int:
    """Fail (for good: no retries) the first ``failures`` runs counted under ``key``, then succeed."""
    attempt = int(_redis().incr(key))
    if attempt <= failures:
        raise RuntimeError(f"run {attempt} of {failures} planned failures")
    return attempt
