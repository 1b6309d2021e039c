"""Task schedules on both dialects: the API (create, list, replace with a version, delete;
a clear 4xx per bad field, 409 on a stale version, 403 for a viewer's write, an audit row per
write), a due time claimed once however many beats race for it, and beat's lease."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from controlplane.app import create_app
from controlplane.tasks import schedules
from controlplane.tasks.beat import BeatLease
from controlplane.tasks.schedules import ScheduleSpec
from tests.support.stores import ADMIN, make_settings
from tests.support.tasks import celery_app, task_settings

BASE = "/api/v1/tasks/schedules"
T0 = datetime(2026, 11, 28, 12, 0, 0)


@pytest.fixture
def tasks(services):
    # Nothing is published here: the harness's broker URL only lets the app be built.
    return task_settings(services, services.rabbitmq.url, capture_events=False).tasks


@pytest.fixture
def client(store, tasks):
    app = create_app(make_settings(store, tasks=tasks))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}) as found:
        yield found


def _audit(store) -> list[tuple[str, str, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT actor, action, target FROM audit_log WHERE action LIKE 'task_schedule.%'")
        )
        return sorted(tuple(r) for r in rows)


def test_the_api_creates_lists_replaces_and_deletes_with_versions(client, store):
    made = client.post(
        BASE, json={"name": "nightly", "task": "jobs.add", "crontab": "0 3 * * *", "args": [1, 2]}
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["kind"], body["version"], body["enabled"], body["total_runs"]) == ("crontab", 1, True, 0)
    assert body["next_run_at"].endswith(("03:00:00Z", "03:00:00+00:00")), body
    assert [s["name"] for s in client.get(BASE).json()] == ["nightly"]

    put = {"task": "jobs.add", "every_s": 30, "args": [2, 2], "version": 1, "priority": 5}
    replaced = client.put(f"{BASE}/nightly", json=put)
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["kind"], replaced.json()["crontab"], replaced.json()["version"]) == (
        "interval",
        None,
        2,
    )
    stale = client.put(f"{BASE}/nightly", json=put)
    assert stale.status_code == 409 and "version 2, not 1" in stale.json()["detail"], stale.text
    assert client.delete(f"{BASE}/nightly", params={"version": 1}).status_code == 409
    assert client.get(f"{BASE}/nightly").json()["args"] == [2, 2]  # the refused write changed nothing
    assert client.delete(f"{BASE}/nightly", params={"version": 2}).status_code == 204
    assert client.get(f"{BASE}/nightly").status_code == 404
    assert _audit(store) == sorted(
        ("admin:admin", f"task_schedule.{what}", "nightly") for what in ("create", "replace", "delete")
    )


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"task": "jobs.nobody"}, "task", "unknown task 'jobs.nobody'"),
        ({"every_s": 0.2}, "every_s", "from 1 to"),
        ({"every_s": None, "crontab": "0 25 * * *"}, "crontab", "the hour field '25'"),
        ({"every_s": None, "crontab": "0 3 * *"}, "crontab", "needs 5 fields"),
        ({"queue": "nowhere"}, "queue", "unknown queue 'nowhere'"),
        ({"priority": 11}, "priority", "from 0 to 10"),
        ({"every_s": None, "run_at": "2020-01-01T00:00:00Z"}, "run_at", "in the past"),
        ({"every_s": None}, "kind", "exactly one of every_s"),
        ({"name": "no spaces"}, "body.name", "pattern"),
        ({"args": "1, 2"}, "body.args", "list"),
    ],
)
def test_a_bad_field_is_refused_by_name_and_nothing_is_stored(client, change, field, says):
    answer = client.post(
        BASE, json={"name": "s1", "task": "jobs.add", "every_s": 10, "args": [1, 2]} | change
    )
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert field in [e["field"] for e in problem["errors"]] and says in problem["detail"], problem
    assert client.get(BASE).json() == []


def test_a_taken_name_conflicts_and_a_viewer_cannot_write(client):
    spec = {"name": "s1", "task": "jobs.add", "every_s": 10, "args": [1, 2]}
    assert client.post(BASE, json=spec).status_code == 201
    assert client.post(BASE, json=spec).status_code == 409
    made = client.post("/api/v1/tokens", json={"name": "grafana", "role": "viewer"})
    viewer = {"Authorization": f"Bearer {made.json()['token']}"}
    assert client.get(BASE, headers=viewer).status_code == 200
    assert client.get(f"{BASE}/s1", headers=viewer).status_code == 200
    writes = [
        client.post(BASE, json=spec | {"name": "s2"}, headers=viewer),
        client.put(f"{BASE}/s1", json={"task": "jobs.add", "every_s": 5, "version": 1}, headers=viewer),
        client.delete(f"{BASE}/s1", headers=viewer),
    ]
    assert [w.status_code for w in writes] == [403, 403, 403], [w.text for w in writes]
    assert client.get(f"{BASE}/s1").json()["version"] == 1


def test_racing_beats_claim_a_due_time_once(store, tasks):
    app = celery_app(make_settings(store, tasks=tasks))
    with store.sessions.begin() as session:
        schedules.create(session, "racy", ScheduleSpec(task="jobs.add", kind="interval", every_s=5, args=[1, 1]),
                         app=app, tasks=tasks, actor="test", now=T0)  # fmt: skip
    now = T0 + timedelta(seconds=6)
    with store.sessions.begin() as session:
        (row,) = schedules.due(session, now=now)
    claims, start = [], threading.Barrier(6)

    def claim() -> None:
        start.wait()
        with store.sessions.begin() as session:
            claims.append(schedules.claim(session, row, now=now))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    won = [c for c in claims if c is not None]
    assert len(claims) == 6 and len(won) == 1, claims
    assert won[0].due == T0 + timedelta(seconds=5) and won[0].next_run_at == T0 + timedelta(seconds=10)
    with store.sessions.begin() as session:
        after = schedules.get(session, "racy")
        assert (after.total_runs, after.next_run_at, after.last_run_at) == (
            1,
            T0 + timedelta(seconds=10),
            now,
        )
        assert schedules.give_back(session, won[0])  # the broker refused the send: due again
    with store.sessions.begin() as session:
        assert [r.next_run_at for r in schedules.due(session, now=now)] == [T0 + timedelta(seconds=5)]


def test_an_edit_between_reading_and_claiming_wins(store, tasks):
    app = celery_app(make_settings(store, tasks=tasks))
    spec = ScheduleSpec(task="jobs.add", kind="interval", every_s=5, args=[1, 1])
    with store.sessions.begin() as session:
        schedules.create(session, "edited", spec, app=app, tasks=tasks, actor="test", now=T0)
    now = T0 + timedelta(seconds=6)
    with store.sessions.begin() as session:
        (row,) = schedules.due(session, now=now)
    with store.sessions.begin() as session:  # new arguments, same timing: the due time stays
        schedules.replace_schedule(session, "edited", replace(spec, args=[2, 2]),
                                   expected_version=1, app=app, tasks=tasks, actor="test", now=now)  # fmt: skip
    with store.sessions.begin() as session:
        assert schedules.claim(session, row, now=now) is None  # read before the edit: sends nothing
        (fresh,) = schedules.due(session, now=now)
        firing = schedules.claim(session, fresh, now=now)
        assert firing is not None and firing.spec.args == [2, 2]


def test_the_beat_lease_has_one_holder_and_passes_on_expiry_or_release(store):
    first, second = BeatLease(store.sessions, 2.0, "beat-1"), BeatLease(store.sessions, 2.0, "beat-2")
    assert first.hold(T0) and not second.hold(T0)
    assert first.hold(T0 + timedelta(seconds=1.5)) and not second.hold(T0 + timedelta(seconds=3))  # renewed
    assert second.hold(T0 + timedelta(seconds=3.6))  # first went quiet: its lease lapsed at 3.5 s
    assert not first.hold(T0 + timedelta(seconds=3.7))  # and it cannot renew what is now beat-2's
    second.release(T0 + timedelta(seconds=4))
    assert first.hold(T0 + timedelta(seconds=4.1)) and first.epoch == 3


def test_a_created_schedule_is_due_as_its_kind_says(store, tasks):
    app = celery_app(make_settings(store, tasks=tasks))
    run_at = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)
    made = {
        "every": ScheduleSpec(task="jobs.add", kind="interval", every_s=90, args=[1, 1]),
        "cron": ScheduleSpec(task="jobs.add", kind="crontab", crontab="*/15 * * * *", args=[1, 1]),
        "once": ScheduleSpec(task="jobs.add", kind="once", run_at=run_at, args=[1, 1]),
        "off": ScheduleSpec(task="jobs.add", kind="interval", every_s=90, args=[1, 1], enabled=False),
    }
    with store.sessions.begin() as session:
        rows = {name: schedules.create(session, name, spec, app=app, tasks=tasks, actor="test", now=T0)
                for name, spec in made.items()}  # fmt: skip
        assert {name: row.next_run_at for name, row in rows.items()} == {
            "every": T0 + timedelta(seconds=90),
            "cron": datetime(2026, 11, 28, 12, 15),
            "once": datetime(2026, 11, 28, 14, 0),
            "off": None,
        }


def test_the_api_answers_problem_json(client):
    answer = client.put(f"{BASE}/missing", json={"task": "jobs.add", "every_s": 5, "version": 1})
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("application/problem+json")
