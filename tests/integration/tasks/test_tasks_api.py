"""GET /api/v1/tasks...: filters, search, pages, analytics, and clear 4xx on bad filters,
on both dialects."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.testclient import TestClient

from controlplane.tasks import history
from tests.support.stores import make_settings
from tests.support.task_runs import seed_runs

T0 = datetime(2030, 1, 1)


def _seed(store) -> None:  # type: ignore[no-untyped-def]
    with store.sessions.begin() as session:
        seed_runs(session, T0)
        events = [
            {"type": "task-received", "uuid": "secret-1", "timestamp": (T0 - datetime(1970, 1, 1)).total_seconds(),
             "name": "jobs.login", "args": "()", "kwargs": "{'user': 'ann', 'password': 'hunter2'}"},
        ]  # fmt: skip
        history.record(session, events, tasks=make_settings(store).tasks, now=T0)


def test_list_filter_search_and_page(api, store):
    _seed(store)
    failed = api.get("/api/v1/tasks", params={"state": "FAILURE", "name": "jobs.add", "limit": 4})
    assert failed.status_code == 200
    first = failed.json()
    assert [r["task_id"] for r in first["runs"]] == ["add-10", "add-9", "add-8", "add-7"]
    rest = api.get(
        "/api/v1/tasks", params={"state": "FAILURE", "limit": 4, "cursor": first["next_cursor"]}
    ).json()
    assert [r["task_id"] for r in rest["runs"]] == ["add-6", "add-5", "add-4", "add-3"]
    assert api.get("/api/v1/tasks", params={"q": "slow-1"}).json()["runs"][0]["queue"] == "slow"
    assert api.get("/api/v1/tasks", params={"queue": "slow"}).json()["runs"].__len__() == 3
    window = {"since": "2030-01-01T00:10:00Z", "until": "2030-01-01T00:10:29Z"}
    assert [r["task_id"] for r in api.get("/api/v1/tasks", params=window).json()["runs"]] == ["slow-0"]


def test_a_password_kwarg_is_shown_redacted(api, store):
    _seed(store)
    run = api.get("/api/v1/tasks/secret-1").json()
    assert "hunter2" not in run["kwargs"] and run["kwargs"] == "{'user': 'ann', 'password': '***'}"
    assert api.get("/api/v1/tasks", params={"q": "hunter2"}).json()["runs"] == []


def test_analytics_by_name_and_queue(api, store):
    _seed(store)
    window = {"since": "2030-01-01T00:00:00Z", "until": "2030-01-01T01:00:00Z"}
    by_queue = api.get("/api/v1/tasks/analytics", params=window | {"by": "queue"}).json()
    celery = next(g for g in by_queue["groups"] if g["key"] == "celery")
    assert (celery["count"], celery["failed"], celery["retried"]) == (100, 10, 20)
    assert abs(celery["runtime_p95"] - 0.9505) < 1e-9 and abs(celery["wait_p50"] - 5.05) < 1e-9


def test_bad_filters_get_a_4xx_naming_the_field(api, store):
    cases = [
        ("/api/v1/tasks", {"state": "DONE"}, 422, "state"),
        ("/api/v1/tasks", {"since": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"}, 422, "since"),
        ("/api/v1/tasks", {"cursor": "not-ours"}, 422, "cursor"),
        ("/api/v1/tasks", {"limit": 501}, 422, "limit"),
        (
            "/api/v1/tasks/analytics",
            {"since": "2030-01-01T00:00:00Z", "until": "2030-01-09T00:00:00Z"},
            422,
            "since",
        ),
        ("/api/v1/tasks/analytics", {"by": "worker"}, 422, "by"),
    ]
    for path, params, status, field in cases:
        answer = api.get(path, params=params)
        assert answer.status_code == status, (params, answer.text)
        assert field in answer.text, answer.text
    missing = api.get("/api/v1/tasks/nope")
    assert missing.status_code == 404 and "no task nope" in missing.text


def test_every_task_route_needs_a_credential(api, store):
    anonymous = TestClient(api.app)
    for path in ("/api/v1/tasks", "/api/v1/tasks/analytics", "/api/v1/tasks/workers", "/api/v1/tasks/queues",
                 "/api/v1/tasks/x"):  # fmt: skip
        assert anonymous.get(path).status_code == 401, path


def test_workers_and_queues_say_when_no_broker_is_configured(api, store):
    assert api.get("/api/v1/tasks/workers").status_code == 503
    assert "management API is not configured" in api.get("/api/v1/tasks/queues").text


def test_time_window_default_is_the_last_hour(api, store):
    _seed(store)
    answer = api.get("/api/v1/tasks/analytics").json()
    assert answer["groups"] == [] and datetime.fromisoformat(answer["until"]) - datetime.fromisoformat(
        answer["since"]
    ) == timedelta(hours=1)
