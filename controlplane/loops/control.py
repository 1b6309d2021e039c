"""The control loop of a `coreplane serve` process: take or keep the lead, and while
leading run the catalog's clock (held recoveries, silent instances), action timeouts,
the policy engine and the action plans, in one transaction per round. With messaging's
RabbitMQ it carries out the queue operations (mq.*); with storage, the storage restores, after
the round's transaction and each in transactions of their own. With a Celery app
(a broker configured) it also carries out the task operations and moves workflows on, the
workflows in a transaction of their own so a result backend that is away does not hold up
the rest. A round runs as soon as an event or an action changes (the notifier wakes it)
and at least every ``evaluate_interval_s``; a task change (the history's batches, several
a second under load) wakes only the workflows."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from controlplane.actions import lifecycle, plans
from controlplane.catalog import instances
from controlplane.clock import utcnow
from controlplane.leader import Leadership
from controlplane.messaging import operations as mq_operations
from controlplane.messaging.connection import MessagingRuntime
from controlplane.notify import ACTIONS, EVENTS, NOTIFIER, TASKS
from controlplane.policy.engine import PolicyEngine
from controlplane.settings import ControlSettings
from controlplane.storage import restore as storage_restore
from controlplane.storage.client import Storage
from controlplane.store.db import make_read_sessionmaker
from controlplane.tasks import operations, workflows

log = logging.getLogger("coreplane.control")


class ControlLoop:
    def __init__(
        self,
        engine: Engine,
        settings: ControlSettings,
        tasks: operations.TaskRuntime | None = None,
        messaging: MessagingRuntime | None = None,
        storage: Storage | None = None,
    ) -> None:
        self.settings = settings
        self.tasks = tasks
        self.messaging = messaging  # carries out the queue operations (mq.*) when set
        self.storage = storage  # carries out storage.restore when set
        self.leadership = Leadership(engine, settings.lease_s)
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.reads = make_read_sessionmaker(engine)
        self.policy = PolicyEngine()
        self._next_renewal = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, now: datetime | None = None) -> bool:
        """One round; returns whether this process leads."""
        if time.monotonic() >= self._next_renewal:
            was = self.leadership.is_leader
            if self.leadership.run_once() and not was:
                self.policy.reset()
            self._next_renewal = time.monotonic() + self.leadership.renew_every_s()
        if not self.leadership.is_leader:
            return False
        now = now or utcnow()
        with self.sessions.begin() as session:
            instances.promote_held(session, now=now, hold_s=self.settings.recover_after_s)
            instances.expire_silent(session, now=now)
            lifecycle.expire_overdue(session, now=now)
            self.policy.run_once(session, now=now)
            if self.tasks is not None:
                operations.advance(session, self.tasks, now=now)
            if self.messaging is not None:
                mq_operations.advance(session, self.messaging, now=now)
            # Restores stream for long: they run after this transaction, each on its own, and
            # the plans leave them pending for that.
            plans.advance(session, now=now, leave=storage_restore.KINDS if self.storage else ())
        self.run_restores(now)
        self.run_workflows(now)
        return True

    def run_restores(self, now: datetime | None = None) -> None:
        """Carry out pending storage restores (controlplane/storage/restore.py), each in
        transactions of its own, so their streaming holds neither the round's transaction
        nor the store's write lock (health expiry, the policy engine and every writer wait on
        it)."""
        if self.storage is None or not self.leadership.is_leader:
            return
        try:
            storage_restore.advance(self.sessions, self.reads, self.storage, now=now or utcnow())
        except Exception:  # the store away: the next round tries again
            log.exception("storage restores round failed")

    def run_workflows(self, now: datetime | None = None) -> None:
        """Move running workflows on, in a transaction of their own so a result backend that
        is away does not hold up the rest of the round."""
        if self.tasks is None or not self.leadership.is_leader:
            return
        try:
            with self.sessions.begin() as session:
                workflows.advance(session, self.tasks.app, self.tasks.tasks, now=now or utcnow())
        except Exception:  # Redis or RabbitMQ away: the next round tries again
            log.exception("workflows round failed")

    def run_forever(self) -> None:
        # Task changes (a history batch, several a second under load) wake only the
        # workflows; events, actions and the clock run the whole round, at least every wait_s.
        channels = (EVENTS, ACTIONS, TASKS) if self.tasks is not None else (EVENTS, ACTIONS)
        whole_due = 0.0
        while not self._stop.is_set():
            seen = NOTIFIER.snapshot(*channels)
            wait_s = min(self.settings.evaluate_interval_s, self.leadership.renew_every_s())
            try:
                if time.monotonic() >= whole_due:
                    self.run_once()
                    whole_due = time.monotonic() + wait_s
                else:
                    self.run_workflows()
            except Exception:  # the loop outlives a bad round (the store restarting, say)
                log.exception("control round failed")
            NOTIFIER.wait(seen, max(0.0, whole_due - time.monotonic()))
            moved = {c for c, g in NOTIFIER.snapshot(*channels).items() if g != seen[c]}
            if moved - {TASKS}:
                whole_due = 0.0  # an event or an action: the whole round now

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        NOTIFIER.fire(EVENTS)  # wake the loop so it sees the stop
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.leadership.step_down()
