"""The console's tasks pages against a real `coreplane serve`, worker, RabbitMQ and Redis:
every page answers a viewer with what the worker really did; an operator retries a failed
task through the actions' preview and confirm and it runs again; a viewer sees no button
and the server refuses the forms."""

from __future__ import annotations

import re
import secrets

import httpx
import redis

from tests.support.console import console_users, csrf_of, page_with
from tests.support.tasks import JOBS, celery_app, task_broker, task_settings, task_worker
from tests.support.tasks_serve import tasks_serving
from tests.support.timing import until

JOBS_CONSOLE = "tests.integration.tasks.jobs_console"
FLOWER = "http://flower.example:5555/"


def _hidden(page: str, form_id: str) -> dict[str, str]:
    """The hidden fields of the form ``form_id`` on ``page``."""
    form = re.search(rf'<form[^>]*id="{form_id}"[^>]*>(.*?)</form>', page, re.S)
    assert form, f"no form {form_id!r} on the page"
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(1)))


def _confirmed(client: httpx.Client, form: dict[str, str], says: str) -> str:
    """Preview ``form`` (checking the preview says ``says``), confirm it: the action's path."""
    preview = client.post("/actions/preview", data=form)
    assert preview.status_code == 200, preview.text
    assert says in preview.text, preview.text
    confirm = re.search(r'<form method="post" action="/actions/confirm">(.*?)</form>', preview.text, re.S)
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', confirm.group(1)))
    done = client.post("/actions/confirm", data=hidden)
    assert done.status_code == 303, done.text
    return done.headers["location"]


def _succeeded(client: httpx.Client, path: str) -> str | None:
    page = client.get(path).text
    assert 'data-state="failed"' not in page, page
    return page if 'data-state="succeeded"' in page else None


def test_tasks_pages_show_real_runs_and_an_operator_retries_a_failure(services, tmp_path):
    store = redis.Redis.from_url(services.redis.url)
    broken = f"console-broken-{secrets.token_hex(4)}"
    with task_broker(services) as broker:
        settings = task_settings(services, broker, modules=[JOBS, JOBS_CONSOLE], flower_url=FLOWER)
        app = celery_app(settings)
        with (
            tasks_serving(settings, tmp_path) as cp,
            task_worker(settings, "--queues=celery", name="console-w@test", log=tmp_path / "w.log"),
        ):
            clients = console_users(cp.url, cp.token, otto="operator", vera="viewer")
            viewer, operator = clients["vera"], clients["otto"]
            added = app.send_task("jobs.add", (2, 3))
            assert added.get(timeout=30) == 5
            store.set(broken, "1")
            failed = app.send_task("jobs_console.mended", (broken,))
            until("the task to fail", lambda: failed.state == "FAILURE", 30, 0.1)

            # A viewer reads every page, with what really happened.
            runs = page_with(viewer, "/tasks", f'data-task="{failed.id}"', "both runs in the history")
            assert f'data-task="{added.id}"' in runs and "Open Flower" in runs and FLOWER in runs
            assert 'form="retry-form"' not in runs and "/actions/preview" not in runs
            block = viewer.get("/tasks", headers={"HX-Request": "true"})  # the block htmx and the socket get
            assert block.status_code == 200 and block.text.lstrip().startswith('<section id="task-runs">')
            run = page_with(viewer, f"/tasks/{added.id}", 'data-state="SUCCESS"', "the add's success")
            block = viewer.get(f"/tasks/{added.id}", headers={"HX-Request": "true"})
            assert (
                block.status_code == 200
                and 'data-state="SUCCESS"' in block.text
                and "<html" not in block.text
            )
            assert "<code>5</code>" in run and "jobs.add" in run
            run = page_with(viewer, f"/tasks/{failed.id}", "Traceback", "the failure's traceback")
            assert f"{broken} is still broken" in run and 'id="retry"' not in run
            workers = viewer.get("/tasks/workers")
            assert workers.status_code == 200 and "console-w@test" in workers.text
            queues = viewer.get("/tasks/queues")
            assert queues.status_code == 200 and 'data-queue="celery"' in queues.text
            assert 'value="tasks.purge"' not in queues.text
            dead = page_with(viewer, "/tasks/dead-letters", failed.id, "the failure dead-lettered")
            assert 'value="tasks.replay"' not in dead
            analytics = page_with(viewer, "/tasks/analytics", 'data-key="jobs.add"', "the add in the figures")
            assert 'data-key="celery"' in analytics
            spec = {"name": "console-sum", "edges": [["a", "t"], ["b", "t"]],
                    "steps": [{"id": "a", "task": "jobs.add", "args": [1, 2]},
                              {"id": "b", "task": "jobs.add", "args": [3, 4]}, {"id": "t", "task": "jobs.total"}]}  # fmt: skip
            submitted = httpx.post(f"{cp.url}/api/v1/tasks/workflows", json=spec,
                                   headers={"Authorization": f"Bearer {cp.token}"})  # fmt: skip
            assert submitted.status_code == 202, submitted.text
            workflow = f"/tasks/workflows/{submitted.json()['id']}"
            assert workflow in page_with(viewer, "/tasks/workflows", "console-sum", "the workflow listed")
            steps = page_with(viewer, workflow, 'data-workflow-state="succeeded"', "the workflow's success")
            assert 'data-step="t"' in steps and "<code>10</code>" in steps
            bad = viewer.get("/tasks", params={"state": "BOGUS"})
            assert bad.status_code == 422 and "state must be one of" in bad.text

            # ... and may not act, whatever the form says.
            csrf = csrf_of(runs)
            form = {"csrf": csrf, "kind": "tasks.retry", "target": "celery", "task_id": failed.id}
            assert viewer.post("/actions/preview", data=form).status_code == 403
            assert viewer.post("/actions/confirm", data={**form, "idempotency_key": "x"}).status_code == 403

            # An operator has the buttons: purge a queue, replay or discard a dead letter.
            assert 'value="tasks.purge"' in operator.get("/tasks/queues").text
            dead = operator.get("/tasks/dead-letters").text
            assert 'value="tasks.replay"' in dead and 'value="tasks.discard"' in dead

            # An operator fixes what the task needs and retries it from its page.
            page = operator.get(f"/tasks/{failed.id}").text
            assert 'id="retry"' in page
            store.delete(broken)
            action = _confirmed(operator, _hidden(page, "retry-form"), "(jobs_console.mended, failure)")
            detail = until("the retry action to succeed", lambda: _succeeded(operator, action), 30, 0.2)
            assert "user:otto" in detail and "tasks.retry" in detail
            rerun = page_with(operator, "/tasks", 'data-state="SUCCESS"', "the retried task's success", 30,
                              name="jobs_console.mended")  # fmt: skip
            assert "mended" in rerun

            # Filtered to one name's failures, the list offers to retry them all.
            store.set(broken, "1")
            again = app.send_task("jobs_console.mended", (broken,))
            until("the second failure", lambda: again.state == "FAILURE", 30, 0.1)
            listing = page_with(operator, "/tasks", f'data-task="{again.id}"', "the second failure", 20,
                                name="jobs_console.mended", state="FAILURE")  # fmt: skip
            assert 'id="retry-all-button"' in listing
            assert (
                'id="retry-all-button"'
                not in viewer.get("/tasks", params={"name": "jobs_console.mended", "state": "FAILURE"}).text
            )
            store.delete(broken)
            for client in clients.values():
                client.close()
