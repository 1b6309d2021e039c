"""A task for the console's tests: one that fails until someone fixes what it needs, so a
retry from the console after the fix succeeds (registered with the jobs module's tasks)."""

from __future__ import annotations

from celery import shared_task

from tests.integration.tasks.jobs import _redis


@shared_task(name="jobs_console.mended", max_retries=0)
def mended(key: str) -> str:
    """Fail while the Redis key ``key`` exists (the bug not fixed yet), succeed once it is gone."""
    if _redis().exists(key):
        raise RuntimeError(f"{key} is still broken")
    return "mended"
