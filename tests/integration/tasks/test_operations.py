"""Task operations as actions, carried out by the leader of a real `coreplane serve`: retry
a failed task (from the dead letters, or sent again from the result backend), retry every
failure of a name since a time, purge a queue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from celery.result import AsyncResult

from tests.support.serve import serving
from tests.support.task_control import client, finished_action
from tests.support.tasks import JOBS, celery_app, task_broker, task_settings, task_worker
from tests.support.tasks_serve import tasks_serving
from tests.support.timing import until

PARTC = "tests.integration.tasks.jobs_partc"


def depth(app, queue: str) -> int:
    with app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(queue, passive=True).message_count


def failed(api, app, key: str) -> str:
    """The id of a partc.fail_first run that failed for good (and was dead-lettered)."""
    task_id = api.post("/tasks", json={"name": "partc.fail_first", "args": [key, 1]}).json()["task_id"]
    until("the failure", lambda: AsyncResult(task_id, app=app).state == "FAILURE", 30, 0.05)
    return task_id


def succeeded(app, task_id: str) -> object:
    until(f"{task_id} to succeed", lambda: AsyncResult(task_id, app=app).state == "SUCCESS", 30, 0.05)
    return AsyncResult(task_id, app=app).result


def dead_ids(api) -> set[str]:
    return {letter["task_id"] for letter in api.get("/tasks/dead-letters").json()}


def test_retrying_failed_tasks_runs_them_again(services, tmp_path):
    key = f"retry-{uuid.uuid4().hex[:8]}"
    with task_broker(services) as broker:
        settings = task_settings(services, broker, modules=[JOBS, PARTC])
        app = celery_app(settings)
        with (
            tasks_serving(settings, tmp_path) as cp,
            client(cp) as api,
            task_worker(settings, "--queues=celery", log=tmp_path / "worker.log"),
        ):
            # From the dead letters: the same task id runs again.
            first = failed(api, app, f"{key}-1")
            until("the dead letter", lambda: first in dead_ids(api), 10, 0.1)
            retry = api.post(f"/tasks/{first}/retry", json={"reason": "the disk has room now"})
            assert retry.status_code == 202, retry.text
            done = finished_action(api, retry.json()["id"])
            assert done["state"] == "succeeded", done
            assert done["result"]["output"]["replayed"] == [first]
            assert succeeded(app, first) == 2
            assert first not in dead_ids(api)

            # Not in the dead letters (discarded): sent again under a new id linked to the old.
            second = failed(api, app, f"{key}-2")
            until("the dead letter", lambda: second in dead_ids(api), 10, 0.1)
            discard = api.post("/tasks/dead-letters/discard", json={"task_ids": [second], "reason": "test"})
            assert finished_action(api, discard.json()["id"])["state"] == "succeeded"
            assert second not in dead_ids(api)
            retry = api.post(f"/tasks/{second}/retry", json={})
            done = finished_action(api, retry.json()["id"])
            assert done["state"] == "succeeded", done
            new_id = done["result"]["output"]["resent"][second]
            assert new_id != second
            assert succeeded(app, new_id) == 2

            # Every failure of the name since T, and none from before T.
            since = datetime.now(UTC).isoformat()
            third, fourth = failed(api, app, f"{key}-3"), failed(api, app, f"{key}-4")
            until("the dead letters", lambda: {third, fourth} <= dead_ids(api), 10, 0.1)
            many = api.post("/tasks/retry-failed", json={"name": "partc.fail_first", "since": since})
            assert many.status_code == 202, many.text
            done = finished_action(api, many.json()["id"])
            assert done["state"] == "succeeded", done
            output = done["result"]["output"]
            assert set(output["replayed"]) | set(output["resent"]) == {third, fourth}, output
            assert succeeded(app, third) == succeeded(app, fourth) == 2

            # A task nobody knows of: the action fails and says why.
            unknown = api.post(f"/tasks/{uuid.uuid4()}/retry", json={}).json()
            done = finished_action(api, unknown["id"])
            assert done["state"] == "failed" and "result backend" in done["result"]["error"], done


def test_purge_empties_a_queue(services, tmp_path):
    with task_broker(services) as broker:
        settings = task_settings(services, broker, queues={"celery": 10, "bulk": 5})
        app = celery_app(settings)
        with tasks_serving(settings, tmp_path) as cp, client(cp) as api:
            for n in range(3):
                api.post(
                    "/tasks", json={"name": "jobs.add", "args": [n, n], "queue": "bulk"}
                ).raise_for_status()
            api.post("/tasks", json={"name": "jobs.add", "args": [1, 1]}).raise_for_status()
            assert depth(app, "bulk") == 3
            purge = api.post("/tasks/queues/bulk/purge", json={"reason": "stale batch"})
            assert purge.status_code == 202, purge.text
            done = finished_action(api, purge.json()["id"])
            assert done["state"] == "succeeded" and done["result"]["output"]["purged"] == 3, done
            assert depth(app, "bulk") == 0
            assert depth(app, "celery") == 1  # other queues untouched
            unknown = api.post("/tasks/queues/nowhere/purge", json={})
            assert unknown.status_code == 422 and "unknown queue" in unknown.text
            assert api.post("/tasks/abc/cancel", json={"signal": "SIGSTOP"}).status_code == 422


def test_without_a_broker_task_writes_say_so_and_operations_fail(tmp_path):
    # `make run`: no RabbitMQ configured, the server runs and says what is missing.
    store = f"sqlite:///{tmp_path}/store.db"
    with serving(store, tmp_path / "serve.log", migrated=False) as cp, client(cp) as api:
        answer = api.post("/tasks", json={"name": "jobs.add", "args": [1, 2]})
        assert answer.status_code == 409 and "no Celery broker" in answer.text
        action = api.post(
            "/actions", json={"kind": "tasks.purge", "target": "celery", "params": {"queue": "celery"}}
        )
        assert action.status_code == 201, action.text
        done = finished_action(api, action.json()["id"])
        assert done["state"] == "failed" and "no Celery broker" in done["result"]["error"], done
