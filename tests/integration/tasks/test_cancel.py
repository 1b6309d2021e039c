"""Cancelling over the API, carried out by the leader of a real `coreplane serve` against a
real worker: a revoked queued task never runs, a terminated one stops within 2 s, a
cancelled workflow revokes its pending steps; who and why are in the audit log."""

from __future__ import annotations

import os
import time
import uuid

import redis
from celery.result import AsyncResult

from tests.support.task_control import client, finished_action, finished_workflow
from tests.support.tasks import celery_app, task_broker, task_settings, task_worker
from tests.support.tasks_serve import tasks_serving
from tests.support.timing import until


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has stopped too
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_a_revoked_queued_task_never_runs_and_a_terminated_one_stops_within_2_s(services, tmp_path):
    r = redis.Redis.from_url(services.redis.url)
    key = f"cancel-{uuid.uuid4().hex[:8]}"
    with task_broker(services) as broker:
        settings = task_settings(services, broker)
        app = celery_app(settings)
        with (
            tasks_serving(settings, tmp_path) as cp,
            client(cp) as api,
            task_worker(settings, "--queues=celery", concurrency=1, log=tmp_path / "worker.log"),
        ):
            # The only worker process is busy, so the next task waits in the queue.
            busy = api.post("/tasks", json={"name": "jobs.sleep", "args": [f"{key}-busy", 30]}).json()[
                "task_id"
            ]
            pid = int(until("the sleeper's pid", lambda: r.get(f"{key}-busy:pid"), 30, 0.05))
            queued = api.post("/tasks", json={"name": "jobs.record", "args": [f"{key}-q", "ran"]}).json()[
                "task_id"
            ]
            revoke = api.post(f"/tasks/{queued}/cancel", json={"reason": "not wanted any more"})
            assert revoke.status_code == 202, revoke.text
            assert finished_action(api, revoke.json()["id"])["state"] == "succeeded"

            terminate = api.post(f"/tasks/{busy}/cancel",
                                 json={"terminate": True, "signal": "SIGTERM", "reason": "runaway"})  # fmt: skip
            sent = finished_action(api, terminate.json()["id"])
            assert sent["state"] == "succeeded", sent
            stopped_at = time.monotonic()
            until("the running task's process to stop", lambda: not alive(pid), 2.0, 0.02)
            assert time.monotonic() - stopped_at < 2.0

            # A task sent after them runs, so the revoked one had its turn and was skipped.
            after = api.post("/tasks", json={"name": "jobs.record", "args": [f"{key}-after", "ran"]}).json()
            AsyncResult(after["task_id"], app=app).get(timeout=30)
            assert r.lrange(f"{key}-q", 0, -1) == []
            assert AsyncResult(queued, app=app).state == "REVOKED"
            assert r.get(f"{key}-busy:done") is None

            audit = api.get("/audit", params={"limit": 50}).json()
            cancels = [a for a in audit if a["action"] == "tasks.cancel"]
            assert {a["details"]["reason"] for a in cancels} == {"not wanted any more", "runaway"}
            assert all(a["actor"].startswith("admin") for a in cancels), cancels
            trail = api.get(f"/actions/{revoke.json()['id']}").json()
            assert trail["requested_by"].startswith("admin") and trail["reason"] == "not wanted any more"


def test_cancelling_a_workflow_revokes_its_pending_steps(services, tmp_path):
    r = redis.Redis.from_url(services.redis.url)
    key = f"wf-{uuid.uuid4().hex[:8]}"
    with task_broker(services) as broker:
        settings = task_settings(services, broker)
        app = celery_app(settings)
        with (
            tasks_serving(settings, tmp_path) as cp,
            client(cp) as api,
            task_worker(settings, "--queues=celery", concurrency=1, log=tmp_path / "worker.log"),
        ):
            spec = {
                "name": "long",
                "steps": [
                    {"id": "slow", "task": "jobs.sleep", "args": [key, 30]},
                    {"id": "queued", "task": "jobs.record", "args": [f"{key}-queued", "ran"]},
                    {
                        "id": "later",
                        "task": "jobs.record",
                        "args": [f"{key}-later", "ran"],
                        "immutable": True,
                    },
                ],
                "edges": [["slow", "later"]],
            }
            workflow = api.post("/tasks/workflows", json=spec).json()
            pid = int(until("the slow step to start", lambda: r.get(f"{key}:pid"), 30, 0.05))

            def queued_sent() -> bool:
                steps = api.get(f"/tasks/workflows/{workflow['id']}").json()["steps"]
                return {s["id"]: s["state"] for s in steps}["queued"] == "queued"

            until("the second root step to be sent", queued_sent, 10, 0.05)
            cancel = api.post(f"/tasks/workflows/{workflow['id']}/cancel", json={"reason": "wrong input"})
            assert cancel.status_code == 202, cancel.text
            assert finished_action(api, cancel.json()["id"])["state"] == "succeeded"
            done = finished_workflow(api, workflow["id"])
            assert done["state"] == "cancelled"
            assert done["reason"].endswith(": wrong input") and "admin" in done["reason"], done["reason"]
            steps = {s["id"]: s for s in done["steps"]}
            assert {s["state"] for s in steps.values()} == {"cancelled"}
            until("the slow step's process to stop", lambda: not alive(pid), 2.0, 0.02)

            after = api.post("/tasks", json={"name": "jobs.record", "args": [f"{key}-after", "ran"]}).json()
            AsyncResult(after["task_id"], app=app).get(timeout=30)
            assert r.lrange(f"{key}-queued", 0, -1) == []  # revoked while queued
            assert r.lrange(f"{key}-later", 0, -1) == []  # never sent
            assert AsyncResult(steps["later"]["task_id"], app=app).state == "PENDING"
            assert r.get(f"{key}:done") is None
            audit = api.get("/audit", params={"limit": 50}).json()
            assert any(
                a["action"] == "task.workflow.cancel" and a["details"]["reason"] == "wrong input"
                for a in audit
            )
            # A finished workflow cannot be cancelled again.
            assert api.post(f"/tasks/workflows/{workflow['id']}/cancel", json={}).status_code == 409
