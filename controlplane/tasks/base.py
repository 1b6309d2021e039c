"""The base class of every task an application registers on coreplane's app.

Retries: an exception in ``autoretry_for`` (every ``Exception`` unless the task says
otherwise, minus ``dont_autoretry_for``) retries the task up to ``max_retries`` times,
each delay drawn from exponential backoff with full jitter: attempt n waits up to
``backoff_s * 2**n`` seconds, capped at ``backoff_max_s``. Every one of those is a task
attribute, so a task overrides any of them in its decorator::

    @app.task(autoretry_for=(OSError,), max_retries=5, backoff_s=0.5)
    def fetch(url): ...

Dead letters: the app runs with ``acks_late`` and without ``acks_on_failure_or_timeout``,
so a task that fails for good (its last retry, or an error it does not retry) is rejected
without requeue and RabbitMQ dead-letters the message, headers and body intact, to the
dead-letter queue (``controlplane.tasks.topology``). Celery still records the failure,
with its traceback, in the result backend and in its task-failed event.
"""

from __future__ import annotations

import random
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded


def backoff_delay(
    retries: int, base_s: float, max_s: float, jitter: bool, rng: random.Random | None = None
) -> float:
    """Seconds before attempt ``retries + 1``: ``base_s * 2**retries`` capped at ``max_s``;
    with ``jitter``, drawn uniformly from [0, that] (AWS's "full jitter": retries of many
    tasks failing together spread out instead of arriving at once)."""
    ceiling = min(max_s, base_s * (2.0 ** min(retries, 62)))
    return (rng or random).uniform(0.0, ceiling) if jitter else ceiling


class CoreplaneTask(Task):
    """Celery's Task with coreplane's retry policy (its defaults come from settings through
    ``make_celery``, which subclasses this with them)."""

    autoretry_for: tuple[type[BaseException], ...] = (Exception,)
    # A task out of time is not retried: the next attempt would run out of time too.
    dont_autoretry_for: tuple[type[BaseException], ...] = (SoftTimeLimitExceeded,)
    retry_backoff = False  # Celery's own (whole-second) backoff stays off: ours is below
    max_retries: int | None = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 600.0
    jitter: bool = True

    def retry(  # same parameters as Task.retry
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: Any = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """Task.retry, with the delay from the backoff policy when the caller gave none."""
        if countdown is None and eta is None:
            countdown = backoff_delay(self.request.retries, self.backoff_s, self.backoff_max_s, self.jitter)
        return super().retry(
            args=args, kwargs=kwargs, exc=exc, throw=throw, eta=eta, countdown=countdown,
            max_retries=max_retries, **options,
        )  # fmt: skip
