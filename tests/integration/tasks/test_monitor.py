"""The task monitor on real RabbitMQ, Redis and `coreplane worker` processes: Celery's
events land in task_runs (and failures in infrastructure_events), on both dialects."""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from controlplane.store.models import InfrastructureEvent, TaskRun
from controlplane.tasks import history
from controlplane.tasks.monitor import TaskMonitor
from tests.support.stores import make_settings
from tests.support.tasks import celery_app, queue_info, task_broker, task_settings, task_worker
from tests.support.timing import until


def _settings(services, broker, store):  # type: ignore[no-untyped-def]
    base = make_settings(store, rabbitmq=services.rabbitmq, redis=services.redis)
    return task_settings(base, broker)


def _run(store, task_id):  # type: ignore[no-untyped-def]
    with store.sessions() as session:
        run = history.get_run(session, task_id)
        if run is not None:
            session.expunge(run)
        return run


def test_events_become_task_runs_with_times_failures_and_redaction(services, store, tmp_path):
    with task_broker(services) as broker:
        settings = _settings(services, broker, store)
        monitor = TaskMonitor(store.engine, settings, celery_app(settings))
        monitor.declare()
        app = celery_app(settings)
        key = secrets.token_hex(4)
        with task_worker(settings, log=tmp_path / "worker.log"):
            slept = app.send_task("jobs.sleep", (key, 0.3))
            added = app.send_task("jobs.add", (2, 3), kwargs={})
            secret = app.send_task(
                "jobs.record", kwargs={"key": key, "value": {"password": "hunter2", "x": 1}}
            )
            failed = app.send_task("jobs.fail", ("planned failure here",))
            for result in (slept, added, secret):
                result.get(timeout=30)
            until("the failure", lambda: failed.state == "FAILURE", 30, 0.1)

            def recorded():  # type: ignore[no-untyped-def]
                monitor.run_once(idle_s=0.3)
                runs = [_run(store, r.id) for r in (slept, added, secret, failed)]
                return runs if all(r and r.state in history.FINISHED for r in runs) else None

            slept_run, added_run, secret_run, failed_run = until("the runs recorded", recorded, 30, 0.1)

    assert (added_run.name, added_run.state, added_run.queue, added_run.result) == (
        "jobs.add",
        "SUCCESS",
        "celery",
        "5",
    )
    assert added_run.args == "(2, 3)"
    assert slept_run.runtime_s is not None and 0.25 <= slept_run.runtime_s < 5
    assert slept_run.wait_s is not None and 0 <= slept_run.wait_s < 5
    assert slept_run.started_at >= slept_run.received_at and slept_run.finished_at >= slept_run.started_at
    assert "hunter2" not in (secret_run.kwargs or "") and "'password': '***'" in secret_run.kwargs
    assert (failed_run.state, failed_run.retries) == ("FAILURE", 1)  # jobs.fail retries once
    assert "ValueError" in failed_run.exception and "planned failure here" in failed_run.traceback
    with store.sessions() as session:
        rows = session.scalars(
            sa.select(InfrastructureEvent).where(InfrastructureEvent.service_name == "celery")
        ).all()
    kinds = sorted((r.event_type, r.status) for r in rows if r.details["task_id"] == failed.id)
    assert kinds == [("task.failed", "critical"), ("task.retried", "warning")]
    failed_row = next(r for r in rows if r.event_type == "task.failed")
    assert failed_row.details["name"] == "jobs.fail" and "ValueError" in failed_row.details["exception"]
    assert "Traceback" in failed_row.details["traceback"]


def test_events_wait_in_the_durable_queue_until_a_monitor_reads_them(services, store, tmp_path):
    with task_broker(services) as broker:
        settings = _settings(services, broker, store)
        # a control plane ran once, then stopped
        TaskMonitor(store.engine, settings, celery_app(settings)).declare()
        app = celery_app(settings)
        with task_worker(settings, log=tmp_path / "worker.log"):
            results = [app.send_task("jobs.add", (i, i)) for i in range(20)]
            assert [r.get(timeout=30) for r in results] == [2 * i for i in range(20)]
        waiting = until(
            "the events queued",
            lambda: queue_info(services, broker, settings.tasks.events_queue)["messages"],
            10,
            0.2,
        )
        assert waiting > 0
        with store.sessions() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(TaskRun)) == 0
        monitor = TaskMonitor(store.engine, settings, celery_app(settings))  # the control plane comes back
        until(
            "all recorded",
            lambda: monitor.run_once(idle_s=0.3) >= 0 and _all_succeeded(store, results),
            30,
            0,
        )
        until(
            "the queue drained",
            lambda: queue_info(services, broker, settings.tasks.events_queue)["messages"] == 0,
            15,
            0.5,
        )


def _all_succeeded(store, results) -> bool:  # type: ignore[no-untyped-def]
    with store.sessions() as session:
        states = session.scalars(sa.select(TaskRun.state).where(TaskRun.task_id.in_([r.id for r in results])))
        return sorted(states) == ["SUCCESS"] * len(results)
