"""The Celery collector against a real `coreplane worker` on a RabbitMQ virtual host of the
test's own: consumers per queue, the age of the oldest message of a backlog nobody consumes,
the wait (due -> started) and runtime quantiles per queue, and counts per task name."""

from __future__ import annotations

import contextlib
import uuid

from agents.collectors.celery import CeleryCollector
from agents.config import TargetConfig
from controlplane.tasks import topology
from tests.support.tasks import celery_app, task_broker, task_settings, task_worker
from tests.support.timing import until

SLEEP_S = 1.0


def figures(obs, name: str, **tags: str) -> list[float]:  # type: ignore[no-untyped-def]
    return [v for n, v, t in obs.metrics if n == name and all(t.get(k) == w for k, w in tags.items())]


@contextlib.contextmanager
def collector(broker: str, management_url: str, *queues: str):  # type: ignore[no-untyped-def]
    target = TargetConfig(type="celery", name="tasks", address=broker, timeout_s=5,
                          options={"queues": list(queues), "management_url": management_url})  # fmt: skip
    found = CeleryCollector(target)
    try:
        yield found
    finally:
        found.close()


def test_a_backlog_nobody_consumes_shows_no_consumer_and_ages(services):
    with task_broker(services) as broker:
        settings = task_settings(services, broker, queues={"celery": 10, "backlog": 10})
        app = celery_app(settings)
        topology.declare(app, settings.tasks, ["celery", "backlog"])
        for i in range(3):
            app.send_task("jobs.add", (i, i), queue="backlog")
        with collector(broker, services.rabbitmq.management_url, "backlog", "celery", "missing") as probe:

            def aged():  # type: ignore[no-untyped-def]
                # The management API knows a queue declared a moment ago only after its first stats.
                obs = probe.collect()
                ages = figures(obs, "coreplane_celery_queue_oldest_age_seconds", queue="backlog")
                empty = figures(obs, "coreplane_celery_queue_oldest_age_seconds", queue="celery")
                return obs if ages and ages[0] >= 1 and empty else None

            obs = until("the backlog's oldest message to age", aged, timeout_s=20, every_s=0.5)
    assert figures(obs, "coreplane_celery_queue_length", queue="backlog") == [3]
    assert figures(obs, "coreplane_celery_queue_consumers", queue="backlog") == [0]
    # Declared and empty: an age of 0; never declared: length 0 and no age at all.
    assert figures(obs, "coreplane_celery_queue_oldest_age_seconds", queue="celery") == [0]
    assert figures(obs, "coreplane_celery_queue_length", queue="missing") == [0]
    assert figures(obs, "coreplane_celery_queue_oldest_age_seconds", queue="missing") == []
    assert 1 <= figures(obs, "coreplane_celery_queue_oldest_age_seconds", queue="backlog")[0] < 60
    assert obs.status == "critical"  # and no worker answers


def test_a_worker_shows_as_consumer_and_its_tasks_as_waits_runtimes_and_counts(services, tmp_path):
    with task_broker(services) as broker:
        settings = task_settings(services, broker)
        app = celery_app(settings)
        with (
            collector(broker, services.rabbitmq.management_url, "celery") as probe,
            task_worker(settings, "--queues=celery", log=tmp_path / "worker.log"),
        ):
            # The receiver hears the worker's heartbeats: it hears the tasks' events too.
            until("the collector to hear the worker", probe._workers_up, timeout_s=20, every_s=0.2)
            key = f"collector:{uuid.uuid4().hex}"
            # One process: the second and third sleeps wait in the queue for the first.
            sleeps = [app.send_task("jobs.sleep", (f"{key}:{i}", SLEEP_S)) for i in range(3)]
            adds = [app.send_task("jobs.add", (i, 1)) for i in range(4)]
            failed = app.send_task("jobs.fail", ("counted",))  # one retry, then fails for good
            assert [r.get(timeout=60) for r in adds] == [1, 2, 3, 4]
            assert [r.get(timeout=60) for r in sleeps] == [SLEEP_S] * 3
            until("the failure", lambda: failed.state == "FAILURE", 30, 0.1)

            def counted():  # type: ignore[no-untyped-def]
                obs = probe.collect()
                done = figures(obs, "coreplane_celery_task_events_total", task="jobs.fail", state="failed")
                return obs if done == [1] and figures(
                    obs, "coreplane_celery_task_events_total", task="jobs.add", state="succeeded") == [4] else None  # fmt: skip

            obs = until("the collector to count every task", counted, timeout_s=30, every_s=0.5)

    def one(name: str, **tags: str) -> float:
        (value,) = figures(obs, name, **tags)
        return value

    assert one("coreplane_celery_queue_consumers", queue="celery") == 1
    assert one("coreplane_celery_queue_oldest_age_seconds", queue="celery") == 0
    assert one("coreplane_celery_task_events_total", task="jobs.sleep", state="succeeded") == 3
    assert one("coreplane_celery_task_events_total", task="jobs.fail", state="retried") == 1
    assert one("coreplane_celery_task_events_total", task="jobs.add", state="failed") == 0
    assert one("coreplane_celery_tasks_total", state="succeeded") == 7
    # The last sleep waited about two sleeps behind the others (sent -> started).
    p50 = one("coreplane_celery_task_wait_seconds", queue="celery", quantile="0.5")
    p95 = one("coreplane_celery_task_wait_seconds", queue="celery", quantile="0.95")
    assert 0 <= p50 <= p95 and 1.5 * SLEEP_S <= p95 < 30, (p50, p95)
    runtime = one("coreplane_celery_task_runtime_seconds", queue="celery", quantile="0.95")
    assert SLEEP_S * 0.9 <= runtime < 10 * SLEEP_S
