"""Submitting tasks through the library and POST /api/v1/tasks, on a real RabbitMQ vhost,
Redis and `coreplane worker`; refusals leave the queue empty."""

from __future__ import annotations

import pytest
from celery.result import AsyncResult

from controlplane.errors import Rejected
from controlplane.tasks import submit, topology
from tests.support.task_control import client, token_of
from tests.support.tasks import celery_app, task_broker, task_settings, task_worker
from tests.support.tasks_serve import tasks_serving

QUEUES = {"celery": 10, "low": 3}


def depth(app, queue: str) -> int:
    """Messages ready in ``queue`` now (a passive declare: the management API's figures lag)."""
    with app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(queue, passive=True).message_count


@pytest.fixture
def broker(services):
    with task_broker(services) as found:
        yield found


def test_the_library_refuses_before_publishing(services, broker):
    settings = task_settings(services, broker, queues=QUEUES)
    app = celery_app(settings)
    topology.declare(app, settings.tasks, list(QUEUES))
    refusals = [
        ({"name": "jobs.nope", "args": [1]}, "name"),
        ({"name": "jobs.add", "args": [object(), 1]}, "args"),
        ({"name": "jobs.add", "args": [1], "kwargs": {"y": float("inf")}}, "kwargs"),
        ({"name": "jobs.add", "args": [1, 2], "priority": 11}, "priority"),
        ({"name": "jobs.add", "args": [1, 2], "queue": "low", "priority": 4}, "priority"),
        ({"name": "jobs.add", "args": [1, 2], "queue": "nowhere"}, "queue"),
        ({"name": "jobs.add", "args": ["x" * (submit.MAX_ARGS_BYTES + 1)]}, "args"),
        ({"name": "jobs.add", "args": [1, 2], "countdown": -1}, "countdown"),
    ]
    for call, field in refusals:
        with pytest.raises(Rejected) as exc:
            submit.submit(app, settings.tasks, **call)
        assert exc.value.errors[0]["field"] == field, (call, exc.value)
    assert depth(app, "celery") == depth(app, "low") == 0
    submit.submit(app, settings.tasks, name="jobs.add", args=[1, 2], queue="low", priority=3)
    assert depth(app, "low") == 1  # the check above could see a message


def test_a_task_submitted_over_the_api_runs(services, broker, tmp_path):
    settings = task_settings(services, broker, queues=QUEUES, routes={"jobs.total": "low"})
    app = celery_app(settings)
    with (
        tasks_serving(settings, tmp_path) as cp,
        client(cp) as api,
        task_worker(settings, "--queues=celery,low", log=tmp_path / "worker.log"),
    ):
        answer = api.post("/tasks", json={"name": "jobs.add", "args": [2, 3], "priority": 7})
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert (body["queue"], body["priority"]) == ("celery", 7)
        assert AsyncResult(body["task_id"], app=app).get(timeout=30) == 5
        routed = api.post("/tasks", json={"name": "jobs.total", "args": [[1, 2, 3]]}).json()
        assert (routed["queue"], routed["priority"]) == ("low", 0)
        assert AsyncResult(routed["task_id"], app=app).get(timeout=30) == 6


def test_bad_input_gets_a_4xx_naming_the_field_and_nothing_is_enqueued(services, broker, tmp_path):
    settings = task_settings(services, broker, queues=QUEUES)
    app = celery_app(settings)
    topology.declare(app, settings.tasks, list(QUEUES))
    deep: list = [1]
    for _ in range(submit.MAX_DEPTH + 5):
        deep = [deep]
    with tasks_serving(settings, tmp_path) as cp, client(cp) as api:
        cases = [
            ({"name": "jobs.unknown", "args": []}, "name", "unknown task"),
            ({"name": "jobs.add", "args": [1, 2], "priority": 99}, "priority", "0 to 10"),
            ({"name": "jobs.add", "args": [1, 2], "queue": "low", "priority": 5}, "priority", "0 to 3"),
            ({"name": "jobs.add", "args": [1, 2], "queue": "elsewhere"}, "queue", "unknown queue"),
            ({"name": "jobs.add", "args": [deep, 1]}, "args", "deep"),
            ({"name": "jobs.add", "args": ["x" * (submit.MAX_ARGS_BYTES + 10)]}, "args", "over"),
        ]
        for body, field, words in cases:
            answer = api.post("/tasks", json=body)
            assert 400 <= answer.status_code < 500, (body, answer.text)
            assert field in answer.text and words in answer.text, answer.text
        # JSON's NaN is not JSON: the serializer would refuse it on the worker's side
        nan = api.post("/tasks", content=b'{"name": "jobs.add", "args": [NaN, 1]}',
                       headers={"Content-Type": "application/json"})  # fmt: skip
        assert 400 <= nan.status_code < 500 and "args" in nan.text, nan.text
        cycle = api.post("/tasks/workflows", json={
            "name": "loop", "steps": [{"id": "a", "task": "jobs.add", "args": [1, 2]},
                                      {"id": "b", "task": "jobs.add", "args": [1]}],
            "edges": [["a", "b"], ["b", "a"]]})  # fmt: skip
        assert cycle.status_code == 422 and "cycle" in cycle.text and "a -> b -> a" in cycle.text, cycle.text
        assert api.get("/tasks/workflows").json() == []
        assert depth(app, "celery") == depth(app, "low") == 0
        assert api.post("/tasks", json={"name": "jobs.add", "args": [1, 2]}).status_code == 202
        assert depth(app, "celery") == 1


def test_a_viewer_gets_403_on_every_write(services, broker, tmp_path):
    settings = task_settings(services, broker)
    with tasks_serving(settings, tmp_path) as cp, client(cp) as admin:
        viewer = client(cp, token_of(admin, "viewer"))
        some = "00000000-0000-0000-0000-000000000001"
        writes = [
            ("/tasks", {"name": "jobs.add", "args": [1, 2]}),
            ("/tasks/workflows", {"name": "w", "steps": [{"id": "a", "task": "jobs.add", "args": [1, 2]}]}),
            (f"/tasks/workflows/{some}/cancel", {"reason": "r"}),
            ("/tasks/retry-failed", {"name": "jobs.add", "since": "2026-01-01T00:00:00Z"}),
            ("/tasks/queues/celery/purge", {"reason": "r"}),
            ("/tasks/dead-letters/replay", {"task_ids": ["x"]}),
            ("/tasks/dead-letters/discard", {"task_ids": ["x"]}),
            ("/tasks/abc/cancel", {"terminate": True}),
            ("/tasks/abc/retry", {}),
        ]
        with viewer:
            for path, body in writes:
                assert viewer.post(path, json=body).status_code == 403, path
            assert viewer.get("/tasks/workflows").status_code == 200
        assert admin.get("/actions", params={"target": "celery"}).json() == []
        assert admin.get("/tasks/workflows").json() == []
