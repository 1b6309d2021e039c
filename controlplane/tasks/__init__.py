"""The Celery application behind `coreplane worker` and `coreplane flower`.

Built from settings on demand, never at import time (STYLE.md): the broker is
RabbitMQ, results go to Redis, unless COREPLANE_TASKS__* says otherwise.
"""

from __future__ import annotations

from celery import Celery

from controlplane.settings import Settings


def make_celery(settings: Settings) -> Celery:
    broker = settings.tasks.broker_url or settings.rabbitmq.url
    if not broker:
        raise ValueError("no Celery broker: set COREPLANE_RABBITMQ__URL or COREPLANE_TASKS__BROKER_URL")
    app = Celery("coreplane", broker=broker, backend=settings.tasks.result_backend or settings.redis.url)
    app.conf.update(
        task_acks_late=True,  # a worker killed mid-task leaves the message for another
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_send_sent_event=True,
        worker_send_task_events=True,
        broker_connection_retry_on_startup=True,
        result_expires=24 * 3600,
    )

    @app.task(name="coreplane.ping")
    def ping() -> str:
        return "pong"

    @app.task(name="coreplane.sleep")
    def sleep(seconds: float) -> float:
        """Hold a worker process for ``seconds`` (at most 60): a load drill for scaling rules."""
        import time

        seconds = min(max(float(seconds), 0.0), 60.0)
        time.sleep(seconds)
        return seconds

    return app
