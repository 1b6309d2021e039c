"""The task library on real RabbitMQ, Redis and `coreplane worker` processes."""

from __future__ import annotations

from tests.support.tasks import celery_app, queue_info, task_broker, task_settings, task_worker
from tests.support.timing import until


def test_a_task_that_fails_for_good_is_dead_lettered(services, tmp_path):
    with task_broker(services) as broker:
        settings = task_settings(services, broker)
        app = celery_app(settings)
        with task_worker(settings, log=tmp_path / "worker.log"):
            assert app.send_task("jobs.add", (2, 3)).get(timeout=30) == 5
            failed = app.send_task("jobs.fail", ("for good",))
            until("the failure", lambda: failed.state == "FAILURE", 30, 0.1)
        dead = until(
            "the dead letter",
            lambda: queue_info(services, broker, "coreplane.dead")["messages"] or None,
            10,
            0.2,
        )
        assert dead == 1
