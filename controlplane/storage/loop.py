"""Storage's background round in `coreplane serve`, on the leader only (one process acts
for the whole deployment): every ``storage.loop_interval_s`` each job below runs in its own
transaction, and one job's failure is logged without stopping the others.

The jobs:
- lifecycle: each bucket's enabled lifecycle rules every ``storage.lifecycle_interval_s``, applied
  by coreplane too (a server that accepted the rules has not shown it applies them;
  controlplane/storage/lifecycle.py ``tick``);
- mirrors: scheduled mirrors that are due (controlplane/storage/mirror.py ``tick``);
- usage: each bucket's objects and bytes counted for quotas and analytics
  (controlplane/storage/analytics.py ``tick``).

Before its leader check, every process flushes its own S3 call figures into the store
(``flush``: analytics.py ``flush``), since each process counts only the calls it made.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from controlplane.storage.client import Storage

log = logging.getLogger("coreplane.storage")

Job = Callable[[Session, Storage], object]


def jobs() -> list[tuple[str, Job]]:
    """(name, job) of each round, in order; each job gets a session it must not commit."""
    from controlplane.storage import analytics, lifecycle, mirror

    return [("lifecycle", lifecycle.tick), ("mirrors", mirror.tick), ("usage", analytics.tick)]


class StorageLoop:
    def __init__(self, engine: Engine, storage: Storage, leads: Callable[[], bool]) -> None:
        self.engine = engine
        self.storage = storage
        self.leads = leads
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> dict[str, str]:
        """One round of every job (on any process: tests call it directly); each job's
        outcome, "ok" or the error."""
        outcome = {}
        for name, job in jobs():
            try:
                with Session(self.engine) as session, session.begin():
                    job(session, self.storage)
                outcome[name] = "ok"
            except Exception as exc:
                log.exception("storage %s round failed", name)
                outcome[name] = f"{type(exc).__name__}: {exc}"
        return outcome

    def flush(self) -> str:
        """This process's storage request figures (analytics.flush) and the usage its writes
        moved (``storage.usage.flush``) into the store: on every process, leader or not, since each counts
        only its own; "ok" or the error."""
        from controlplane.storage import analytics

        try:
            with Session(self.engine) as session, session.begin():
                flushed = analytics.flush(session)
                counted = self.storage.usage.flush(session)
            flushed()  # marked only once committed: a failed write is retried next time
            counted()
            return "ok"
        except Exception as exc:
            log.exception("storage request figures not flushed")
            return f"{type(exc).__name__}: {exc}"

    def _run(self) -> None:
        while not self._stop.wait(self.storage.settings.loop_interval_s):
            self.flush()
            if self.leads():
                self.run_once()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="storage-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self.flush()  # the calls since the last round, before the process goes
