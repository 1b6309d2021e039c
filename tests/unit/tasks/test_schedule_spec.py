"""A schedule's checks and timing, without a broker: crontab fields refused by name, the
next due time of each kind, an interval keeping its phase after beat was away."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from celery import shared_task

from controlplane.errors import Rejected, TooLarge
from controlplane.settings import Settings
from controlplane.tasks import make_celery
from controlplane.tasks.schedules import ScheduleSpec, following, next_run, parse_crontab, validate

NOW = datetime(2026, 3, 2, 12, 0, 30)  # a Monday


@shared_task(name="unit.schedule_me")
def schedule_me(x: int) -> int:
    return x


@pytest.fixture(scope="module")
def app():
    # A broker URL nobody listens on: building the app connects to nothing.
    settings = Settings(tasks={"broker_url": "amqp://127.0.0.1:1//", "queues": {"celery": 10, "bulk": 3}})
    return make_celery(settings), settings.tasks


def _check(app, **spec):
    celery, tasks = app
    fields = {"task": "unit.schedule_me", "kind": "interval", "every_s": 60.0} | spec
    return validate(ScheduleSpec(**fields), app=celery, tasks=tasks, now=NOW)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("61 * * * *", "the minute field '61'"),
        ("* 24 * * *", "the hour field '24'"),
        ("* * 0 * *", "the day of month field '0'"),
        ("* * * 13 *", "the month field '13'"),
        ("* * * * funday", "the day of week field 'funday'"),
        ("*/0 * * * *", "the minute field '*/0'"),
        ("* * * *", "needs 5 fields"),
        ("0 0 31 2 *", "never occurs"),
    ],
)
def test_a_bad_crontab_is_refused_naming_the_field(text, says):
    with pytest.raises(Rejected) as refused:
        parse_crontab(text)
    assert says in str(refused.value)
    assert refused.value.errors[0]["field"] == "crontab"


def test_the_next_time_of_each_kind():
    every = ScheduleSpec(task="t", kind="interval", every_s=90)
    assert next_run(every, after=NOW) == NOW + timedelta(seconds=90)
    cron = ScheduleSpec(task="t", kind="crontab", crontab="*/15 * * * *")
    assert next_run(cron, after=NOW) == datetime(2026, 3, 2, 12, 15)
    weekly = ScheduleSpec(task="t", kind="crontab", crontab="30 4 * * 0")  # Sundays 04:30 UTC
    assert next_run(weekly, after=NOW) == datetime(2026, 3, 8, 4, 30)
    on_the_hour = ScheduleSpec(task="t", kind="crontab", crontab="0 12 * * *")
    assert next_run(on_the_hour, after=datetime(2026, 3, 2, 12, 0)) == datetime(
        2026, 3, 3, 12, 0
    )  # strictly after


def test_after_a_firing_an_interval_keeps_its_phase_and_skips_what_beat_missed():
    every = ScheduleSpec(task="t", kind="interval", every_s=10)
    due = datetime(2026, 3, 2, 12, 0, 0)
    assert following(every, due=due, now=due + timedelta(seconds=0.3)) == due + timedelta(seconds=10)
    # Beat was away for 35 s: one firing now, the next at the phase's next slot, not a burst of 3.
    assert following(every, due=due, now=due + timedelta(seconds=35)) == due + timedelta(seconds=40)
    once = ScheduleSpec(task="t", kind="once", run_at=due)
    assert following(once, due=due, now=due) is None


def test_a_schedule_is_checked_like_a_submit(app):
    checked = _check(app, crontab="ignored for an interval", args=(1,), priority=3)
    assert checked.every_s == 60.0 and checked.crontab is None and checked.args == [1]
    refusals = {
        "task": {"task": "unit.nobody"},
        "every_s": {"every_s": 0.5},
        "queue": {"queue": "nowhere"},
        "priority": {"queue": "bulk", "priority": 4},  # bulk's x-max-priority is 3
        "args": {"args": [float("nan")]},
        "kind": {"kind": "sometimes"},
        "run_at": {"kind": "once", "run_at": NOW - timedelta(hours=1)},
        "crontab": {"kind": "crontab", "crontab": None},
    }
    for name, spec in refusals.items():
        with pytest.raises(Rejected) as refused:
            _check(app, **spec)
        assert refused.value.errors[0]["field"] == name, (name, refused.value)
    with pytest.raises(TooLarge):
        _check(app, kwargs={"blob": "x" * 300_000})


def test_a_one_off_keeps_its_time_in_utc(app):
    from datetime import UTC, timezone

    paris = timezone(timedelta(hours=1))
    checked = _check(app, kind="once", run_at=datetime(2026, 3, 2, 14, 0, tzinfo=paris))
    assert checked.run_at == datetime(2026, 3, 2, 13, 0) and checked.every_s is None
    assert _check(app, kind="once", run_at=datetime(2026, 3, 2, 12, 0, tzinfo=UTC)).run_at == datetime(
        2026, 3, 2, 12
    )
