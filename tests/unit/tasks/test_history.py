"""Folding Celery events into task runs (order, duplicates, redaction, caps) and pruning,
on an embedded SQLite store."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from controlplane.settings import TasksSettings
from controlplane.store.models import InfrastructureEvent, TaskRun
from controlplane.tasks import history

T0 = 1_800_000_000.0
TASKS = TasksSettings(queues={"celery": 10, "mail": 5}, routes={"mail.*": "mail"})


def ev(kind: str, at: float, task_id: str = "t1", **fields) -> dict:  # type: ignore[no-untyped-def]
    return {"type": f"task-{kind}", "uuid": task_id, "timestamp": T0 + at, "hostname": "w1@h", **fields}


LIFE = [
    ev("sent", 0.0, name="jobs.add", args="(1, 2)", kwargs="{}", queue="celery", retries=0),
    ev("received", 0.5, name="jobs.add", args="(1, 2)", kwargs="{}", retries=0),
    ev("started", 1.5),
    ev("succeeded", 3.5, result="3", runtime=2.0),
]


def _record(sessions, events, tasks=TASKS) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        history.record(session, events, tasks=tasks, now=datetime(2030, 1, 1))


def _run(sessions, task_id="t1") -> TaskRun:  # type: ignore[no-untyped-def]
    with sessions() as session:
        run = history.get_run(session, task_id)
        assert run is not None
        session.expunge(run)
        return run


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_any_order_and_any_split_into_batches_gives_the_same_run(sessions, order):
    events = [LIFE[i] for i in order]
    _record(sessions, events[:2])
    _record(sessions, events[2:])
    run = _run(sessions)
    assert (run.state, run.name, run.queue, run.result, run.worker) == (
        "SUCCESS",
        "jobs.add",
        "celery",
        "3",
        "w1@h",
    )
    assert (run.runtime_s, run.wait_s) == (2.0, 1.5)  # wait: sent (due) -> started
    assert run.finished_at == datetime.utcfromtimestamp(T0 + 3.5)


def test_wait_starts_when_the_latest_attempt_is_due(sessions):
    """A countdown or a retry's backoff is not waiting: wait counts from the ETA; a retry's
    new send moves the start to that attempt's due time."""
    eta = datetime.fromtimestamp(T0 + 10, UTC).isoformat()
    _record(
        sessions,
        [ev("sent", 0, name="jobs.add", queue="celery", eta=eta), ev("received", 0.1), ev("started", 12)],
    )
    assert _run(sessions).wait_s == 2.0
    retry_eta = datetime.fromtimestamp(T0 + 20, UTC).isoformat()
    _record(
        sessions,
        [ev("retried", 13), ev("sent", 13, eta=retry_eta), ev("received", 13.1), ev("started", 20.5)],
    )
    assert _run(sessions).wait_s == 0.5


def test_a_finished_task_never_goes_back_but_a_later_replay_starts_it_again(sessions):
    _record(sessions, [ev("received", 0), ev("started", 1), ev("failed", 2, exception="ValueError('x')")])
    _record(sessions, [ev("started", 1)])  # a redelivered, older event
    assert _run(sessions).state == "FAILURE"
    _record(sessions, [ev("received", 100), ev("started", 101)])  # replayed with the same id
    run = _run(sessions)
    assert (run.state, run.finished_at, run.wait_s) == ("STARTED", None, 1.0)


def test_failures_and_retries_become_events_once(sessions):
    retried = ev("retried", 2, exception="ConnectionError('a')", traceback="Traceback ...")
    failed = ev(
        "failed", 5, exception="ConnectionError('b')", traceback="Traceback (most recent call last) ..."
    )
    _record(
        sessions, [ev("received", 0, name="jobs.flaky", retries=0), retried, ev("received", 3, retries=1)]
    )
    _record(sessions, [failed, failed])
    _record(sessions, [failed])  # redelivered after a crash
    with sessions() as session:
        rows = session.scalars(sa.select(InfrastructureEvent).order_by(InfrastructureEvent.timestamp)).all()
    assert [(r.event_type, r.status) for r in rows] == [
        ("task.retried", "warning"),
        ("task.failed", "critical"),
    ]
    assert rows[1].details | {"traceback": None} == {
        "task_id": "t1", "name": "jobs.flaky", "queue": "celery", "exception": "ConnectionError('b')",
        "traceback": None, "retries": 1, "worker": "w1@h",
    }  # fmt: skip
    assert _run(sessions).retries == 1


@pytest.mark.parametrize(
    ("kwargs", "hidden"),
    [
        ("{'password': 'hunter2', 'user': 'ann'}", "hunter2"),
        ("{'db': {'Api_Key': \"k'1\"}, 'n': 1}", "k'1"),
        ("{'token': <object at 0x1>, 'x': 2}", "<object"),  # not a literal: the pattern
        ("{'secret': 'abcdefghijklmnopqrst...", "abcdefghij"),  # cut by Celery's saferepr
    ],
)
def test_secrets_are_withheld_from_kwargs(kwargs, hidden):
    redacted = history.redact_kwargs(kwargs, TASKS.redact)
    assert hidden not in redacted and "***" in redacted


def test_args_can_be_withheld_and_every_text_is_capped(sessions):
    tasks = TASKS.model_copy(update={"redact_args": True})
    _record(sessions, [ev("received", 0, name="mail.send", args="('a', 'b')", kwargs="{}")], tasks)
    _record(sessions, [ev("failed", 1, task_id="t2", exception="E" * 10_000, traceback="x" * 100_000)])
    assert _run(sessions).args == "(2 argument(s) withheld)"
    assert _run(sessions).queue == "mail"  # no task-sent event: where the routes send it
    failed = _run(sessions, "t2")
    assert len(failed.exception) <= history.EXCEPTION_MAX and len(failed.traceback) <= history.TRACEBACK_MAX


def test_prune_by_age_then_by_count(sessions):
    now = datetime(2030, 1, 10)
    tasks = TASKS.model_copy(update={"history_days": 2, "history_max_rows": 1000})
    with sessions.begin() as session:
        for i in range(1200):
            at = now - timedelta(days=5 if i < 100 else 0, seconds=i)
            session.add(
                TaskRun(task_id=f"t{i:05}", state="SUCCESS", finished_at=at, updated_at=at, retries=0)
            )
        old_running = now - timedelta(days=9)
        session.add(TaskRun(task_id="running", state="STARTED", updated_at=old_running, retries=0))
    with sessions.begin() as session:
        deleted = history.prune(session, tasks=tasks, now=now)
    with sessions() as session:
        left = set(session.scalars(sa.select(TaskRun.task_id)))
    # 100 finished 5 days ago go by age; then 1101 rows exceed 1000: the oldest 101 go
    # (the old running one, then t01100..t01199).
    assert deleted == 201 and len(left) == 1000
    assert "running" not in left and "t00099" not in left and "t01099" in left and "t01100" not in left


def test_list_filters_search_and_pages(sessions):
    events = [ev("received", i, task_id=f"t{i}", name="jobs.add" if i % 2 else "jobs.fail", args=f"({i},)")
              for i in range(10)]  # fmt: skip
    events.append(ev("failed", 20, task_id="t4", exception="ValueError('boom')"))
    _record(sessions, events)
    with sessions() as session:
        assert [r.task_id for r in history.list_runs(session, search="boom")] == ["t4"]
        assert [r.task_id for r in history.list_runs(session, state="FAILURE", name="jobs.fail")] == ["t4"]
        first = history.list_runs(session, name="jobs.add", limit=3)
        rest = history.list_runs(
            session, name="jobs.add", limit=3, before=(first[-1].updated_at, first[-1].task_id)
        )
        assert [r.task_id for r in first + rest] == ["t9", "t7", "t5", "t3", "t1"]


def test_a_send_stamped_after_the_task_finished_leaves_it_finished(sessions):
    """The publisher stamps task-sent after publishing: a fast task's task-succeeded can be
    the older event (the tasks bench saw 5 runs in 3,000 stay PENDING before this)."""
    _record(
        sessions,
        [ev("received", 0.001), ev("started", 0.002), ev("succeeded", 0.003, result="1", runtime=0.001)],
    )
    _record(sessions, [ev("sent", 0.004, name="jobs.add", queue="celery")])
    run = _run(sessions)
    assert (run.state, run.name, run.finished_at) == (
        "SUCCESS",
        "jobs.add",
        datetime.utcfromtimestamp(T0 + 0.003),
    )
