"""The control loop of a `coreplane serve` process: take or keep the lead, and while
leading run the catalog's clock (held recoveries, silent instances), action timeouts,
the policy engine and the action plans, in one transaction per round. With a Celery app
(a broker configured) it also carries out the task operations and moves workflows on, the
workflows in a transaction of their own so a result backend that is away does not hold up
the rest. A round runs as soon as an event, an action or a task changes (the notifier
wakes it) and at least every ``evaluate_interval_s``."""

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
from controlplane.notify import ACTIONS, EVENTS, NOTIFIER, TASKS
from controlplane.policy.engine import PolicyEngine
from controlplane.settings import ControlSettings
from controlplane.tasks import operations, workflows

log = logging.getLogger("coreplane.control")


class ControlLoop:
    def __init__(
        self, engine: Engine, settings: ControlSettings, tasks: operations.TaskRuntime | None = None
    ) -> None:
        self.settings = settings
        self.tasks = tasks
        self.leadership = Leadership(engine, settings.lease_s)
        self.sessions = sessionmaker(engine, expire_on_commit=False)
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
            plans.advance(session, now=now)
        if self.tasks is not None:
            try:
                with self.sessions.begin() as session:
                    workflows.advance(session, self.tasks.app, self.tasks.tasks, now=now)
            except Exception:  # Redis or RabbitMQ away: the next round tries again
                log.exception("workflows round failed")
        return True

    def run_forever(self) -> None:
        while not self._stop.is_set():
            seen = NOTIFIER.snapshot(EVENTS, ACTIONS, TASKS)
            try:
                self.run_once()
            except Exception:  # the loop outlives a bad round (the store restarting, say)
                log.exception("control round failed")
            wait_s = min(self.settings.evaluate_interval_s, self.leadership.renew_every_s())
            NOTIFIER.wait(seen, wait_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        NOTIFIER.fire(EVENTS)  # wake the loop so it sees the stop
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.leadership.step_down()
