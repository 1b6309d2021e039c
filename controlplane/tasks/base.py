"""The base class of every task an application registers on coreplane's app.

Retries: an exception in ``autoretry_for`` (every ``Exception`` unless the task says
otherwise, minus ``dont_autoretry_for``) retries the task up to ``max_retries`` times,
each delay drawn from exponential backoff with full jitter: attempt n waits up to
``backoff_s * 2**n`` seconds, capped at ``backoff_max_s``. Every one of those is a task
attribute, so a task overrides any of them in its decorator::

    @app.task(autoretry_for=(OSError,), max_retries=5, backoff_s=0.5)
    def fetch(url): ...

Time limits: ``soft_time_limit`` raises SoftTimeLimitExceeded inside the task (which is
not retried), ``time_limit`` kills the task's process; both default to settings and a
task sets its own in its decorator. A soft limit at or above the task's hard one is
dropped: it could never fire first, and Celery's prefork pool arms the hard limit only
once the soft one has fired, so it would hold the hard limit back.

Dead letters: the app runs with ``acks_late`` and without ``acks_on_failure``, so a task
that fails for good (its last retry, or an error it does not retry) is rejected without
requeue and RabbitMQ dead-letters the message, headers and body intact, to the
dead-letter queue (``controlplane.tasks.topology``). A task killed at its hard limit
goes there too (``DeadLetteringRequest``). Celery still records the failure, with its
traceback, in the result backend and in its task-failed event.
"""

from __future__ import annotations

import random
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.worker.request import Request


def backoff_delay(
    retries: int, base_s: float, max_s: float, jitter: bool, rng: random.Random | None = None
) -> float:
    """Seconds before attempt ``retries + 1``: ``base_s * 2**retries`` capped at ``max_s``;
    with ``jitter``, drawn uniformly from [0, that] (AWS's "full jitter": retries of many
    tasks failing together spread out instead of arriving at once)."""
    ceiling = min(max_s, base_s * (2.0 ** min(retries, 62)))
    return (rng or random).uniform(0.0, ceiling) if jitter else ceiling


class DeadLetteringRequest(Request):
    """A task killed at its hard time limit is dead-lettered like any task failing for
    good. Celery would either ack its message (``acks_on_timeout``: lost) or requeue it (to
    be killed again, for ever); rejecting it first makes Celery's own ack or requeue that
    follows a no-op (a request settles its message once)."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft and self.task.acks_late:
            self.reject(requeue=False)
        super().on_timeout(soft, timeout)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        exc = getattr(exc_info.exception, "exc", exc_info.exception)  # unwrap ExceptionWithTraceback
        if isinstance(exc, TimeLimitExceeded) and self.task.acks_late:
            self.reject(requeue=False)
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


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
    Request = DeadLetteringRequest

    @classmethod
    def on_bound(cls, app: Any) -> None:
        """Drop a soft time limit that is not below the hard one (module docstring)."""
        if cls.time_limit and cls.soft_time_limit and cls.soft_time_limit >= cls.time_limit:
            cls.soft_time_limit = None

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
