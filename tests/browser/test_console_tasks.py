"""The tasks page in Debian's Chromium against a real `coreplane serve`, worker, RabbitMQ
and Redis: an operator retries a failed task from the tasks page (preview, confirm) and,
in another window left open on the list, watches its state turn to SUCCESS without a
reload; every tasks page renders without a JavaScript error (screenshots under
var/screenshots/)."""

from __future__ import annotations

import secrets

import redis
from playwright.sync_api import expect

from tests.browser.test_console_home import SCREENSHOTS
from tests.browser.test_console_live import LIVE_S, _page, chromium
from tests.support.console import console_users
from tests.support.tasks import JOBS, celery_app, task_broker, task_settings, task_worker
from tests.support.tasks_serve import tasks_serving
from tests.support.timing import until

JOBS_CONSOLE = "tests.integration.tasks.jobs_console"
PAGES = ["/tasks", "/tasks/workers", "/tasks/queues", "/tasks/dead-letters", "/tasks/analytics",
         "/tasks/workflows"]  # fmt: skip


def test_an_operator_retries_a_failed_task_and_watches_it_succeed_live(services, tmp_path):
    store = redis.Redis.from_url(services.redis.url)
    broken = f"browser-broken-{secrets.token_hex(4)}"
    with task_broker(services) as broker:
        settings = task_settings(services, broker, modules=[JOBS, JOBS_CONSOLE])
        app = celery_app(settings)
        with (
            tasks_serving(settings, tmp_path) as cp,
            task_worker(settings, "--queues=celery", log=tmp_path / "w.log"),
            chromium() as browser,
        ):
            for client in console_users(cp.url, cp.token, otto="operator").values():
                client.close()
            store.set(broken, "1")
            failed = app.send_task("jobs_console.mended", (broken,))
            until("the task to fail", lambda: failed.state == "FAILURE", 30, 0.1)

            watcher = _page(browser, cp.url, username="otto")
            watcher.goto("/tasks?name=jobs_console.mended")
            row = watcher.locator(f'#task-runs tr[data-task="{failed.id}"]')
            expect(row.locator(".task-state [data-state]")).to_have_attribute(
                "data-state", "FAILURE", timeout=LIVE_S
            )
            expect(watcher.locator("body")).to_have_attribute("data-live", "open", timeout=LIVE_S)
            watcher.evaluate("window.notReloaded = true")

            store.delete(broken)  # the bug is fixed: the retry will succeed
            operator = _page(browser, cp.url, username="otto")
            operator.goto("/tasks?name=jobs_console.mended")
            operator.locator(f'tr[data-task="{failed.id}"] button.retry').click()
            expect(operator.locator("ol.plan")).to_contain_text("(jobs_console.mended, failure)")
            operator.click("#confirm")
            expect(operator.locator('[data-state="succeeded"]').first).to_be_visible(timeout=LIVE_S)

            succeeded = watcher.locator('#task-runs .task-state [data-state="SUCCESS"]')
            expect(succeeded.first).to_be_visible(timeout=LIVE_S)
            assert watcher.evaluate("window.notReloaded") is True, "the page was reloaded"
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            watcher.screenshot(path=SCREENSHOTS / "tasks.png", full_page=True)

            operator.goto(f"/tasks/{failed.id}")
            for path in PAGES:
                answer = operator.goto(path)
                assert answer is not None and answer.status == 200, (path, answer and answer.status)
                operator.wait_for_load_state("networkidle")
                operator.screenshot(
                    path=SCREENSHOTS / f"{path.strip('/').replace('/', '-')}.png", full_page=True
                )
            for page in (watcher, operator):
                assert page.js_errors == []  # type: ignore[attr-defined]
