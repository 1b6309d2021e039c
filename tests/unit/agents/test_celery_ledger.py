"""The Celery collector's ledger of task events, fed events as a receiver hands them over:
the wait counts from when a task is due (its ETA when later than sent), names past the cap
are counted as "other", samples leave the window, and the map of tasks in flight is bounded."""

from __future__ import annotations

from datetime import UTC, datetime

from agents.collectors import celery
from agents.collectors.celery import TaskLedger, quantile

T0 = 1_800_000_000.0


def sent(task_id: str, name: str, at: float, queue: str = "celery", eta: float | None = None) -> dict:
    when = datetime.fromtimestamp(eta, UTC).isoformat() if eta is not None else None
    return {"type": "task-sent", "uuid": task_id, "name": name, "queue": queue, "timestamp": at, "eta": when}


def run(ledger: TaskLedger, task_id: str, started: float, runtime: float, state: str = "succeeded") -> None:
    ledger.on_event({"type": "task-started", "uuid": task_id, "timestamp": started})
    ledger.on_event(
        {"type": f"task-{state}", "uuid": task_id, "timestamp": started + runtime, "runtime": runtime}
    )


def test_the_wait_runs_from_sent_or_from_the_eta_when_later():
    ledger = TaskLedger(window_s=60, max_names=10)
    ledger.on_event(sent("a", "jobs.add", T0))
    run(ledger, "a", T0 + 3, 0.5)
    # A countdown of 10 s, started 1 s after it fell due: it waited 1 s, not 11.
    ledger.on_event(sent("b", "jobs.add", T0, eta=T0 + 10))
    run(ledger, "b", T0 + 11, 0.5)
    waits = ledger.quantiles(ledger.waits, now=T0 + 12)
    assert [round(w, 6) for w in waits["celery"]] == [1.0, 3.0]
    assert ledger.quantiles(ledger.runtimes, now=T0 + 12) == {"celery": [0.5, 0.5]}
    assert ledger.counts["jobs.add"]["succeeded"] == 2 and not ledger.pending


def test_samples_leave_the_window():
    ledger = TaskLedger(window_s=60, max_names=10)
    ledger.on_event(sent("a", "jobs.add", T0))
    run(ledger, "a", T0 + 5, 1)
    assert ledger.quantiles(ledger.waits, now=T0 + 60) == {"celery": [5.0]}
    assert ledger.quantiles(ledger.waits, now=T0 + 70) == {}


def test_names_past_the_cap_are_counted_as_other():
    ledger = TaskLedger(window_s=60, max_names=2)
    for i, name in enumerate(["a", "b", "c", "d", "a"]):
        ledger.on_event(sent(str(i), name, T0))
        run(ledger, str(i), T0 + 1, 0.1, state="failed")
    assert {n: c["failed"] for n, c in ledger.counts.items()} == {"a": 2, "b": 1, "other": 2}


def test_a_retried_task_keeps_its_name_until_it_fails_for_good():
    ledger = TaskLedger(window_s=60, max_names=10)
    ledger.on_event(sent("a", "jobs.flaky", T0))
    run(ledger, "a", T0 + 1, 0.1, state="retried")
    ledger.on_event({"type": "task-rejected", "uuid": "a", "timestamp": T0 + 2})  # dead-lettered
    run(ledger, "a", T0 + 2, 0.1, state="failed")
    assert dict(ledger.counts["jobs.flaky"]) == {"retried": 1, "failed": 1}


def test_tasks_in_flight_are_bounded(monkeypatch):
    monkeypatch.setattr(celery, "MAX_TRACKED", 3)
    ledger = TaskLedger(window_s=60, max_names=10)
    for i in range(5):
        ledger.on_event(sent(str(i), "jobs.add", T0 + i))
    assert list(ledger.pending) == ["2", "3", "4"]


def test_quantile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (quantile(values, 0.5), quantile(values, 0.95), quantile([7.0], 0.95)) == (50.0, 95.0, 7.0)
