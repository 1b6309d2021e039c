"""`coreplane beat`: Celery beat with a scheduler that reads the schedules from the store
(``task_schedules``) on every tick, about once a second, so a schedule created, changed or
disabled from the API or the console takes effect without restarting beat.

Only one beat fires, by two locks of different strength:
- a lease: the ``leader_lease`` row named "beat" (it works on SQLite and PostgreSQL alike).
  A beat that holds it renews it each tick; the others log that they stand by and try to
  take it each tick, which they can once it has expired (its holder died) or been released
  (its holder stopped): a standby takes over within a lease (COREPLANE_CONTROL__LEASE_S).
- a compare-and-set per firing (``schedules.claim``): a firing moves the row's due time on
  only if the row still has the due time (and version) this beat read. So even two beats
  that both believe they hold the lease (a paused holder waking after its lease passed) can
  never fire one due time twice; each firing's task id is derived from the schedule and the
  due time, so a duplicate would even show as the same id twice.

A firing is claimed (committed) before its task is sent; if the broker refuses the send,
the claim is given back and the next tick tries again.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from celery import Celery
from celery.beat import Scheduler
from sqlalchemy import CursorResult, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from controlplane import notify
from controlplane.clock import utcnow
from controlplane.errors import Rejected
from controlplane.settings import Settings
from controlplane.store.db import make_engine, make_sessionmaker
from controlplane.store.models import LeaderLease
from controlplane.tasks import schedules, submit

log = logging.getLogger("coreplane.beat")

LEASE = "beat"
TICK_S = 1.0  # the longest an edit waits before beat sees it
FIRING_IDS = uuid.UUID("6f1d3c52-0a4e-4f0b-9a57-2f6c1b8e7d90")  # namespace of firings' task ids


def firing_task_id(schedule_id: Any, due: datetime) -> str:
    """The task id of one due time of one schedule: the same wherever it is computed."""
    return str(uuid.uuid5(FIRING_IDS, f"{schedule_id}/{due.isoformat()}"))


class BeatLease:
    """The "beat" row of ``leader_lease``: taken when free or expired, renewed by its holder
    (matched by holder and epoch, so a holder that lost it cannot renew someone else's)."""

    def __init__(self, sessions: sessionmaker[Session], lease_s: float, holder: str | None = None) -> None:
        self.sessions = sessions
        self.lease_s = lease_s
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.epoch = 0  # ours while we hold it, else 0
        self.seen: tuple[str, int] | None = None  # (holder, epoch) last logged, to log changes once

    def hold(self, now: datetime) -> bool:
        """Take or keep the lease at ``now``; whether this beat may fire."""
        try:
            with self.sessions.begin() as session:
                held = self.epoch > 0 and self._renew(session, now)
                if not held:
                    self.epoch = 0
                    held = self._take(session, now)
                row = session.get(LeaderLease, LEASE)
                current = (row.holder, row.epoch, row.expires_at) if row is not None else None
        except IntegrityError:  # another beat inserted the first row at the same moment
            self.epoch, held, current = 0, False, None
        self._log(held, current)
        return held

    def _renew(self, session: Session, now: datetime) -> bool:
        renewed = cast("CursorResult[Any]", session.execute(
            update(LeaderLease)
            .where(
                LeaderLease.name == LEASE, LeaderLease.holder == self.holder, LeaderLease.epoch == self.epoch
            )
            .values(expires_at=now + timedelta(seconds=self.lease_s))
        ))  # fmt: skip
        return renewed.rowcount == 1

    def _take(self, session: Session, now: datetime) -> bool:
        until = now + timedelta(seconds=self.lease_s)
        taken = cast("CursorResult[Any]", session.execute(
            update(LeaderLease)
            .where(LeaderLease.name == LEASE, LeaderLease.expires_at < now)
            .values(holder=self.holder, epoch=LeaderLease.epoch + 1, acquired_at=now, expires_at=until)
        ))  # fmt: skip
        if taken.rowcount == 1:
            self.epoch = session.scalar(select(LeaderLease.epoch).where(LeaderLease.name == LEASE)) or 0
            return True
        if session.get(LeaderLease, LEASE) is not None:
            return False  # someone holds it
        session.add(LeaderLease(name=LEASE, holder=self.holder, epoch=1, acquired_at=now, expires_at=until))
        session.flush()
        self.epoch = 1
        return True

    def _log(self, held: bool, current: tuple[str, int, datetime] | None) -> None:
        who = (current[0], current[1]) if current else None
        if who == self.seen:
            return
        self.seen = who
        if held:
            log.warning(
                "beat %s holds the beat lease (epoch %d): it fires the schedules", self.holder, self.epoch
            )
        elif current is not None:
            log.warning(
                "beat %s is standby: %s holds the beat lease (epoch %d, until %s UTC) and fires",
                self.holder, current[0], current[1], f"{current[2]:%H:%M:%S}",
            )  # fmt: skip

    def release(self, now: datetime) -> None:
        """Let a standby take over at once (a clean stop)."""
        if not self.epoch:
            return
        with self.sessions.begin() as session:
            session.execute(
                update(LeaderLease)
                .where(
                    LeaderLease.name == LEASE,
                    LeaderLease.holder == self.holder,
                    LeaderLease.epoch == self.epoch,
                )
                .values(expires_at=now)
            )
        self.epoch = 0


class StoreScheduler(Scheduler):
    """Celery beat's scheduler, reading ``task_schedules`` each tick instead of a shelve file.
    ``settings`` is set on a subclass by ``run``; built lazily (for beat's banner) it opens nothing."""

    settings: Settings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lease: BeatLease | None = None
        self.sessions: sessionmaker[Session] | None = None
        self._engine: Any = None
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        self._engine = make_engine(self.settings.database_url)
        self.sessions = make_sessionmaker(self._engine)
        self.lease = BeatLease(self.sessions, self.settings.control.lease_s)

    @property
    def info(self) -> str:
        url = make_url(self.settings.database_url).render_as_string(hide_password=True)
        return f"    . store -> {url} (lease {self.settings.control.lease_s:g} s)"

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One look: hold the lease, fire what is due; seconds until the next look."""
        assert self.lease is not None and self.sessions is not None
        now = utcnow()
        try:
            if not self.lease.hold(now):
                return TICK_S
            self.fire_due(now)
            with self.sessions.begin() as session:
                upcoming = schedules.next_due(session)
        except Exception:  # the store away: beat keeps trying, it never fires without the lease
            log.exception("beat cannot reach the store; trying again in %g s", TICK_S)
            return TICK_S
        if upcoming is None:
            return TICK_S
        return min(TICK_S, max(0.01, (upcoming - utcnow()).total_seconds()))

    def fire_due(self, now: datetime) -> list[str]:
        """Claim and send every schedule due at ``now``; the task ids sent."""
        assert self.sessions is not None
        with self.sessions.begin() as session:
            rows = schedules.due(session, now=now)
        sent = []
        for row in rows:
            with self.sessions.begin() as session:
                firing = schedules.claim(session, row, now=now)
                if firing is not None:
                    notify.announce(session, notify.TASKS)
            if firing is None:
                log.info("schedule %s: its due time was taken or changed meanwhile; not fired here", row.name)
                continue
            task_id = self._send(firing)
            if task_id:
                sent.append(task_id)
        return sent

    def _send(self, firing: schedules.Firing) -> str | None:
        spec, task_id = firing.spec, firing_task_id(firing.schedule_id, firing.due)
        try:
            submit.submit(self.app, self.settings.tasks, name=spec.task, args=spec.args, kwargs=spec.kwargs,
                          queue=spec.queue, priority=spec.priority, task_id=task_id)  # fmt: skip
        except Rejected as exc:  # e.g. its task's module no longer lists it: sending again cannot help
            log.error(
                "schedule %s: task %s not sent (%s); the firing is skipped", firing.name, spec.task, exc
            )
            return None
        except Exception:
            log.exception(
                "schedule %s: task %s not sent; its due time stays for the next tick", firing.name, spec.task
            )
            assert self.sessions is not None
            with self.sessions.begin() as session:
                schedules.give_back(session, firing)
            return None
        log.info(
            "schedule %s: sent %s as %s (due %s UTC)",
            firing.name,
            spec.task,
            task_id,
            f"{firing.due:%H:%M:%S}",
        )
        return task_id

    def should_sync(self) -> bool:
        return False  # nothing to write back: every firing is committed as it happens

    def close(self) -> None:
        if self.lease is not None:
            try:
                self.lease.release(utcnow())
            except Exception:  # noqa: BLE001 - the store away: the lease expires on its own
                log.warning("beat could not release its lease; a standby takes over when it expires")
            self.lease = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def run(app: Celery, settings: Settings) -> None:
    """Run beat in this process until SIGTERM or SIGINT."""
    scheduler = type("StoreScheduler", (StoreScheduler,), {"settings": settings, "__module__": __name__})
    app.Beat(scheduler=scheduler, max_interval=TICK_S, loglevel=settings.log_level.upper()).run()
