"""`coreplane beat` on the store, with real beat and worker processes on a RabbitMQ virtual
host of the test's own: an edit takes effect without a restart, two beats fire each due
time once (and the standby takes over when the holder is killed), a one-off fires once."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import redis
from sqlalchemy.orm import Session

from controlplane.clock import utcnow
from controlplane.settings import Settings
from controlplane.store.db import make_engine, make_sessionmaker
from controlplane.tasks import schedules
from controlplane.tasks.schedules import ScheduleSpec
from tests.support.processes import coreplane_bin
from tests.support.serve import migrate
from tests.support.tasks import JOBS, celery_app, task_broker, task_settings, task_worker, tasks_env
from tests.support.timing import until

PARTD = "tests.integration.tasks.jobs_partd"
LEASE_S = "2"
HOLDS = "it fires the schedules"  # what the holder logs (a standby names the holder too)


class Beats:
    """The store (a fresh SQLite file) that beats and the test share, and the beats' environment."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings = settings
        self.env = tasks_env(
            settings, database_url=f"sqlite:///{tmp_path}/store.db", control__lease_s=LEASE_S
        )
        migrate(self.env)
        self.engine = make_engine(self.env["COREPLANE_DATABASE_URL"])
        self.sessions = make_sessionmaker(self.engine)
        self.app = celery_app(settings)
        self.tmp_path = tmp_path

    def start(self, name: str) -> tuple[subprocess.Popen, Path]:
        log = self.tmp_path / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [coreplane_bin(), "beat"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return proc, log

    def create(self, name: str, spec: ScheduleSpec) -> None:
        with self.sessions.begin() as session:
            schedules.create(
                session, name, spec, app=self.app, tasks=self.settings.tasks, actor="test", now=utcnow()
            )

    def change(self, name: str, **fields: object) -> None:
        with self.sessions.begin() as session:
            row = schedules.get(session, name)
            schedules.replace_schedule(session, name, replace(schedules.spec_of(row), **fields),
                                       expected_version=row.version, app=self.app, tasks=self.settings.tasks,
                                       actor="test", now=utcnow())  # fmt: skip

    def row(self, name: str):  # type: ignore[no-untyped-def]
        with Session(self.engine) as session:
            return schedules.get(session, name)


@contextmanager
def beats(services: Settings, tmp_path: Path) -> Iterator[Beats]:
    with task_broker(services) as broker:
        settings = task_settings(services, broker, modules=[JOBS, PARTD], capture_events=False)
        found = Beats(settings, tmp_path)
        try:
            with task_worker(settings, log=tmp_path / "worker.log", concurrency=2):
                yield found
        finally:
            found.engine.dispose()


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _log_has(log: Path, text: str) -> bool:
    return text in log.read_text(errors="replace")


def _fired(services: Settings, key: str) -> list[str]:
    return [v.decode() for v in redis.Redis.from_url(services.redis.url).lrange(key, 0, -1)]


def test_an_edit_takes_effect_without_restarting_beat(services, tmp_path):
    key, marker = f"beat-{uuid.uuid4().hex}", f"marker-{uuid.uuid4().hex}"
    with beats(services, tmp_path) as store:
        store.create("every", ScheduleSpec(task="partd.fired", kind="interval", every_s=60, args=[key]))
        beat, log = store.start("beat")
        try:
            until("beat to take the lease", lambda: _log_has(log, HOLDS), 30, 0.2,
                  logs=lambda: log.read_text())  # fmt: skip
            assert store.row("every").total_runs == 0 and _fired(services, key) == []  # due in a minute
            changed_at = time.monotonic()
            store.change("every", every_s=1.0)
            until("3 firings a second apart", lambda: len(_fired(services, key)) >= 3, 10, 0.1,
                  logs=lambda: log.read_text()[-3000:])  # fmt: skip
            assert time.monotonic() - changed_at < 8  # the first within a tick, then one a second

            store.change("every", enabled=False)
            stopped_at = store.row("every").total_runs
            until(
                "the firings claimed before the edit to run",
                lambda: len(_fired(services, key)) == stopped_at,
                10,
            )
            # Beat has looked at the store several times once another schedule fired 3 times.
            store.create(
                "marker", ScheduleSpec(task="partd.fired", kind="interval", every_s=1, args=[marker])
            )
            until("the marker schedule to fire 3 times", lambda: len(_fired(services, marker)) >= 3, 15, 0.1)
            assert store.row("every").total_runs == stopped_at and len(_fired(services, key)) == stopped_at
            assert beat.poll() is None
        finally:
            _stop(beat)


def test_two_beats_fire_each_due_time_once_and_the_standby_takes_over(services, tmp_path):
    key = f"beat-{uuid.uuid4().hex}"
    with beats(services, tmp_path) as store:
        store.create("fast", ScheduleSpec(task="partd.fired", kind="interval", every_s=1, args=[key]))
        started = utcnow()
        (first, first_log), (second, second_log) = store.start("beat-a"), store.start("beat-b")
        procs = {"a": (first, first_log), "b": (second, second_log)}
        try:
            until("both beats to say which they are",
                  lambda: all(_log_has(lg, HOLDS) or _log_has(lg, "is standby")
                              for _, lg in procs.values()), 30, 0.2)  # fmt: skip
            holders = [n for n, (_, lg) in procs.items() if _log_has(lg, HOLDS)]
            assert len(holders) == 1, {n: lg.read_text()[-2000:] for n, (_, lg) in procs.items()}
            standby = "b" if holders == ["a"] else "a"
            assert _log_has(procs[standby][1], "is standby")
            until("8 firings", lambda: store.row("fast").total_runs >= 8, 20, 0.2)

            # The holder dies without a word: the standby takes the lease once it expires.
            procs[holders[0]][0].send_signal(signal.SIGKILL)
            procs[holders[0]][0].wait(timeout=10)
            killed_runs = store.row("fast").total_runs
            until("the standby to take over", lambda: _log_has(procs[standby][1], HOLDS),
                  float(LEASE_S) + 10, 0.2)  # fmt: skip
            until(
                "firings after the takeover", lambda: store.row("fast").total_runs >= killed_runs + 3, 15, 0.2
            )
            store.change("fast", enabled=False)
            ended = utcnow()
            runs = store.row("fast").total_runs
            fired = until("every claimed firing to run", lambda: (f := _fired(services, key)) and len(f) >= runs
                          and f, 15, 0.2)  # fmt: skip
        finally:
            for proc, _ in procs.values():
                _stop(proc)
    assert len(fired) == runs, (len(fired), runs)
    assert len(set(fired)) == len(fired), "a due time was fired twice (the same task id twice)"
    # One firing per second at most (two beats each firing would give about twice as many),
    # minus at most a lease and a tick of the failover.
    window_s = (ended - started).total_seconds()
    assert window_s - float(LEASE_S) - 4 <= runs <= window_s + 1, (runs, window_s)


def test_a_one_off_fires_once_and_disables_itself(services, tmp_path):
    key, marker = f"once-{uuid.uuid4().hex}", f"marker-{uuid.uuid4().hex}"
    with beats(services, tmp_path) as store:
        beat, log = store.start("beat")
        try:
            run_at = utcnow() + timedelta(seconds=2)
            store.create("once", ScheduleSpec(task="partd.fired", kind="once", run_at=run_at, args=[key]))
            (task_id,) = until("the one-off to run", lambda: _fired(services, key), 20, 0.1,
                               logs=lambda: log.read_text()[-3000:])  # fmt: skip
            row = store.row("once")
            assert (row.enabled, row.total_runs, row.next_run_at) == (False, 1, None)
            assert row.last_run_at >= run_at
            store.create(
                "marker", ScheduleSpec(task="partd.fired", kind="interval", every_s=1, args=[marker])
            )
            until("the marker schedule to fire 3 times", lambda: len(_fired(services, marker)) >= 3, 15, 0.1)
            assert _fired(services, key) == [task_id] and store.row("once").total_runs == 1
        finally:
            _stop(beat)
