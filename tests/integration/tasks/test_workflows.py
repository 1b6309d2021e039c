"""Workflows submitted over the API and moved on by the leader of a real `coreplane serve`,
run by a real worker on RabbitMQ with results in Redis."""

from __future__ import annotations

from celery.result import AsyncResult

from tests.support.task_control import client, finished_workflow
from tests.support.tasks import celery_app, task_broker, task_settings, task_worker
from tests.support.tasks_serve import tasks_serving


def step(step_id: str, task: str, *args: object, **extra: object) -> dict:
    return {"id": step_id, "task": task, "args": list(args), **extra}


def test_a_chord_then_a_chain_completes_with_the_right_result(services, tmp_path):
    with task_broker(services) as broker:
        settings = task_settings(services, broker)
        with (
            tasks_serving(settings, tmp_path) as cp,
            client(cp) as api,
            task_worker(settings, "--queues=celery", concurrency=2, log=tmp_path / "worker.log"),
        ):
            spec = {
                "name": "sum then add",
                # a, b and c in parallel (a group); total gets [a, b, c] (a chord); plus gets total (a chain)
                "steps": [step("a", "jobs.add", 1, 2), step("b", "jobs.add", 3, 4), step("c", "jobs.add", 5, 6),
                          step("total", "jobs.total"), step("plus", "jobs.add", 100),
                          step("alone", "jobs.add", 7, 8, immutable=True)],
                "edges": [["c", "total"], ["a", "total"], ["b", "total"], ["total", "plus"], ["a", "alone"]],
            }  # fmt: skip
            created = api.post("/tasks/workflows", json=spec)
            assert created.status_code == 202, created.text
            assert {s["state"] for s in created.json()["steps"]} == {"waiting"}
            done = finished_workflow(api, created.json()["id"])
            assert done["state"] == "succeeded", done
            steps = {s["id"]: s for s in done["steps"]}
            assert steps["total"]["result"] == 21  # 11 + 3 + 7, in edge order c, a, b
            assert steps["plus"]["result"] == 121
            assert steps["alone"]["result"] == 15  # immutable: its own arguments only
            assert done["results"] == {"plus": 121, "alone": 15}
            assert done["reason"] is None
            app = celery_app(settings)
            assert AsyncResult(steps["total"]["task_id"], app=app).args == [[11, 3, 7]]
            listed = api.get("/tasks/workflows").json()
            assert [w["id"] for w in listed] == [done["id"]]


def test_a_failing_chain_step_stops_its_dependents_and_the_workflow_says_why(services, tmp_path):
    with task_broker(services) as broker:
        settings = task_settings(services, broker)
        with (
            tasks_serving(settings, tmp_path) as cp,
            client(cp) as api,
            task_worker(settings, "--queues=celery", log=tmp_path / "worker.log"),
        ):
            spec = {
                "name": "breaks",
                "steps": [step("first", "jobs.add", 1, 2), step("boom", "jobs.fail", "disk full", immutable=True),
                          step("after", "jobs.add", 1), step("last", "jobs.add", 1), step("side", "jobs.add", 2)],
                "edges": [["first", "boom"], ["boom", "after"], ["after", "last"], ["first", "side"]],
            }  # fmt: skip
            created = api.post("/tasks/workflows", json=spec).json()
            done = finished_workflow(api, created["id"])
            steps = {s["id"]: s for s in done["steps"]}
            assert done["state"] == "failed"
            assert done["reason"].startswith("step boom failed: ValueError"), done["reason"]
            assert "disk full" in done["reason"]
            assert steps["first"]["state"] == steps["side"]["state"] == "succeeded"
            assert steps["side"]["result"] == 5  # 3 from first, then its own 2
            assert steps["boom"]["state"] == "failed"
            for stopped in ("after", "last"):
                assert steps[stopped]["state"] == "stopped"
                assert steps[stopped]["reason"].startswith("step boom failed: ValueError"), steps[stopped]
            app = celery_app(settings)
            assert AsyncResult(steps["after"]["task_id"], app=app).state == "PENDING"  # never sent
