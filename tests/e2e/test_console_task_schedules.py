"""The Schedules page against a real `coreplane serve` with tasks on a RabbitMQ virtual host
of the test's own: viewers read, operators create, edit, disable and delete through forms
with CSRF and the version they read (the API's checks, versions and audit), and a refused
form says which field is wrong and keeps what was typed."""

from __future__ import annotations

import html

import httpx

from tests.support.console import console_users, csrf_of
from tests.support.tasks import task_broker, task_settings
from tests.support.tasks_serve import tasks_serving

PAGE = "/tasks/schedules"
FORM = {"name": "nightly", "task": "jobs.add", "kind": "crontab", "every_s": "", "crontab": "0 3 * * *",
        "run_at": "", "args": "[1, 2]", "kwargs": "{}", "queue": "", "priority": "", "enabled": "1"}  # fmt: skip


def _api(url: str, token: str, path: str = "") -> httpx.Response:
    return httpx.get(f"{url}/api/v1/tasks/schedules{path}", headers={"Authorization": f"Bearer {token}"})


def test_operators_edit_schedules_from_the_console_and_viewers_read_them(services, tmp_path):
    with task_broker(services) as broker, tasks_serving(task_settings(services, broker), tmp_path) as cp:
        people = console_users(cp.url, cp.token, olga="operator", vera="viewer")
        operator, viewer = people["olga"], people["vera"]

        page = operator.get(PAGE).text
        made = operator.post(PAGE, data={"csrf": csrf_of(page), **FORM})
        assert made.status_code == 303, made.text[-2000:]
        stored = _api(cp.url, cp.token, "/nightly").json()
        assert (stored["kind"], stored["crontab"], stored["args"], stored["updated_by"]) == (
            "crontab", "0 3 * * *", [1, 2], "user:olga")  # fmt: skip

        seen = viewer.get(PAGE)
        assert seen.status_code == 200 and 'data-schedule="nightly"' in seen.text and "0 3 * * *" in seen.text
        assert "New schedule" not in seen.text and 'action="/tasks/schedules/nightly"' not in seen.text
        refused = viewer.post(PAGE, data={"csrf": csrf_of(seen.text), **FORM, "name": "viewers"})
        assert refused.status_code == 403
        assert operator.post(PAGE, data={**FORM, "name": "no-csrf"}).status_code == 403

        bad = operator.post(
            PAGE, data={"csrf": csrf_of(page), **FORM, "name": "bad", "crontab": "0 25 * * *"}
        )
        assert bad.status_code == 422
        assert "the hour field &#39;25&#39;" in bad.text or "the hour field '25'" in html.unescape(bad.text)
        assert 'value="bad"' in bad.text and 'value="0 25 * * *"' in bad.text  # what was typed is kept
        unknown = operator.post(
            PAGE, data={"csrf": csrf_of(page), **FORM, "name": "u", "task": "jobs.nobody"}
        )
        assert unknown.status_code == 422 and "unknown task" in html.unescape(unknown.text)

        edit = {**FORM, "kind": "interval", "every_s": "30", "crontab": "", "version": "1"}
        edited = operator.post(f"{PAGE}/nightly", data={"csrf": csrf_of(page), **edit})
        assert edited.status_code == 303, edited.text[-2000:]
        stale = operator.post(f"{PAGE}/nightly", data={"csrf": csrf_of(page), **edit, "every_s": "45"})
        assert stale.status_code == 409 and "version 2, not 1" in html.unescape(stale.text)
        assert _api(cp.url, cp.token, "/nightly").json()["every_s"] == 30

        off = operator.post(
            f"{PAGE}/nightly/enabled", data={"csrf": csrf_of(page), "version": "2", "enabled": "0"}
        )
        assert off.status_code == 303
        listed = operator.get(PAGE).text
        assert 'data-schedule="nightly" data-enabled="no"' in listed
        assert _api(cp.url, cp.token, "/nightly").json()["next_run_at"] is None

        assert (
            operator.post(f"{PAGE}/nightly/delete", data={"csrf": csrf_of(page), "version": "2"}).status_code
            == 409
        )
        gone = operator.post(f"{PAGE}/nightly/delete", data={"csrf": csrf_of(page), "version": "3"})
        assert gone.status_code == 303
        assert (
            _api(cp.url, cp.token).json() == [] and 'data-schedule="nightly"' not in operator.get(PAGE).text
        )


def test_the_list_refreshes_as_an_htmx_block(services, tmp_path):
    with task_broker(services) as broker, tasks_serving(task_settings(services, broker), tmp_path) as cp:
        viewer = console_users(cp.url, cp.token, vera="viewer")["vera"]
        made = httpx.post(f"{cp.url}/api/v1/tasks/schedules", headers={"Authorization": f"Bearer {cp.token}"},
                          json={"name": "once", "task": "jobs.add", "args": [1, 1],
                                "run_at": "2030-01-01T00:00:00Z"})  # fmt: skip
        assert made.status_code == 201, made.text
        block = viewer.get(PAGE, headers={"HX-Request": "true"})
        assert block.status_code == 200 and block.text.lstrip().startswith('<section id="schedule-list"')
        assert 'data-schedule="once"' in block.text and "2030-01-01 00:00:00" in block.text
        assert "<html" not in block.text
