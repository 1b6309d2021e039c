"""History survives a control-plane restart (real `coreplane serve`, worker, RabbitMQ),
retention runs in the store maintenance loop, and PostgreSQL's SQL percentiles agree
with the definitions."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from controlplane.loops.store_maintenance import StoreMaintenance
from controlplane.settings import RetentionSettings
from controlplane.store.models import TaskRun
from controlplane.tasks import analytics
from tests.support.processes import free_port, stop
from tests.support.serve import migrate, start_serve
from tests.support.stores import make_settings
from tests.support.task_runs import seed_runs
from tests.support.tasks import celery_app, task_broker, task_settings, task_worker, tasks_env
from tests.support.timing import until


def test_history_survives_a_control_plane_restart(services, tmp_path):
    with task_broker(services) as broker:
        settings = task_settings(services, broker)
        port, token = free_port(), secrets.token_urlsafe(16)
        env = tasks_env(
            settings, database_url=f"sqlite:///{tmp_path}/store.db", admin_token=token, server__port=str(port)
        )
        migrate(env)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"})
        app = celery_app(settings)

        def states(results):  # type: ignore[no-untyped-def]
            found = {}
            for r in results:
                answer = api.get(f"/api/v1/tasks/{r.id}")
                found[r.id] = answer.json()["state"] if answer.status_code == 200 else None
            return found

        serve = start_serve(env, tmp_path / "serve1.log")
        with task_worker(settings, log=tmp_path / "worker.log"):
            try:
                before = [app.send_task("jobs.add", (1, i)) for i in range(5)]
                until(
                    "the first tasks recorded", lambda: set(states(before).values()) == {"SUCCESS"}, 30, 0.2
                )
            finally:
                stop(serve)
            # The control plane is down: these tasks run, their events wait in the queue.
            during = [app.send_task("jobs.add", (2, i)) for i in range(10)]
            during.append(app.send_task("jobs.fail", ("while down",)))
            assert [r.get(timeout=30) for r in during[:10]] == [2 + i for i in range(10)]
            until("the failure", lambda: during[-1].state == "FAILURE", 30, 0.1)
        serve = start_serve(env, tmp_path / "serve2.log")
        try:
            found = until(
                "the tasks run while down recorded",
                lambda: (s := states(during)) and None not in s.values() and s,
                30,
                0.2,
            )
            assert sorted(found.values()) == ["FAILURE"] + ["SUCCESS"] * 10
            assert set(states(before).values()) == {"SUCCESS"}
            events = api.get("/api/v1/events", params={"service_name": "celery", "event_type": "task.failed"})
            assert [e["details"]["task_id"] for e in events.json()["events"]] == [during[-1].id]
        finally:
            stop(serve)
            api.close()


def test_the_maintenance_loop_prunes_task_history(store):
    now = datetime(2030, 1, 10)
    with store.sessions.begin() as session:
        for i in range(1100):
            at = now - timedelta(days=10 if i < 50 else 0, seconds=i)
            session.add(TaskRun(task_id=f"t{i}", state="FAILURE", finished_at=at, updated_at=at, retries=0))
    tasks = make_settings(store).tasks.model_copy(update={"history_days": 3, "history_max_rows": 1000})
    StoreMaintenance(store.engine, RetentionSettings(), tasks).run_once(now)
    with store.sessions() as session:
        left = set(session.scalars(sa.select(TaskRun.task_id)))
    assert len(left) == 1000 and "t49" not in left and "t50" in left and "t1099" not in left


def test_postgresql_percentiles_match_the_definitions(pg_store):
    since = datetime(2030, 1, 1)
    with pg_store.sessions.begin() as session:
        seed_runs(session, since)
    with pg_store.sessions() as session:
        rows = {
            r["key"]: r
            for r in analytics.summary(session, by="name", since=since, until=since + timedelta(hours=1))
        }
    add = rows["jobs.add"]
    assert add["runtime_p50"] == pytest.approx(0.505) and add["runtime_p99"] == pytest.approx(0.9901)
    assert add["wait_p95"] == pytest.approx(9.505) and (add["failure_rate"], add["retry_rate"]) == (0.1, 0.2)
    assert rows["jobs.slow"]["wait_p50"] is None
