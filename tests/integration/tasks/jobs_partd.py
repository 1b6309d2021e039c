"""Test tasks for schedules and beat (registered through COREPLANE_TASKS__MODULES beside
tests.integration.tasks.jobs)."""

from __future__ import annotations

from celery import shared_task

from tests.integration.tasks.jobs import _redis


@shared_task(name="partd.fired", bind=True)
def fired(self, key: str) -> str:  # type: ignore[no-untyped-def]
    """Append this run's task id to the Redis list ``key``: beat derives the id from the
    schedule and the due time, so a due time fired twice shows as one id twice."""
    _redis().rpush(key, self.request.id)
    return self.request.id
