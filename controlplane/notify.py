"""Wake-ups, so that the path from a failed probe to a dispatched action is event-driven
end to end: ingest announces new events, the leader's engine wakes on them, a created
action wakes the agent's waiting long-poll.

Within a process every announcement fires after its transaction commits. Across
processes (several `coreplane serve` on one PostgreSQL) the same announcement travels as
a PostgreSQL NOTIFY, sent in the transaction (so it is delivered only if the transaction
commits), and each process LISTENs on one connection of its own. A wake-up carries no
data: whoever wakes reads the store, so a lost or spurious wake-up costs latency, never
correctness.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict

from sqlalchemy import event, text
from sqlalchemy.orm import Session

log = logging.getLogger("coreplane.notify")

EVENTS, ACTIONS, CATALOG = "coreplane_events", "coreplane_actions", "coreplane_catalog"
TASKS = "coreplane_tasks"  # task runs, workflows or schedules changed
MESSAGING = "coreplane_messaging"  # dead letters archived, replayed or discarded
CHANNELS = (EVENTS, ACTIONS, CATALOG, TASKS, MESSAGING)


class Notifier:
    """Per channel, a generation number that every announcement bumps; waiters (threads or
    coroutines) wait for it to move past the one they last saw."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation: dict[str, int] = defaultdict(int)
        self._futures: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Future]]] = defaultdict(set)

    def generation(self, channel: str) -> int:
        with self._cond:
            return self._generation[channel]

    def fire(self, channel: str) -> None:
        with self._cond:
            self._generation[channel] += 1
            self._cond.notify_all()
            futures, self._futures[channel] = self._futures[channel], set()
        for loop, future in futures:
            loop.call_soon_threadsafe(_resolve, future)

    def snapshot(self, *channels: str) -> dict[str, int]:
        with self._cond:
            return {c: self._generation[c] for c in channels}

    def wait(self, seen: dict[str, int], timeout_s: float) -> bool:
        """Block the thread until any channel in ``seen`` moves past the generation seen."""
        with self._cond:
            return self._cond.wait_for(
                lambda: any(self._generation[c] != g for c, g in seen.items()), timeout_s
            )

    async def wait_async(self, channel: str, seen: int, timeout_s: float) -> bool:
        return await self.wait_any_async({channel: seen}, timeout_s)

    async def wait_any_async(self, seen: dict[str, int], timeout_s: float) -> bool:
        """Wait (without a thread) until any channel in ``seen`` moves past the generation seen."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._cond:
            if any(self._generation[c] != g for c, g in seen.items()):
                return True
            for channel in seen:
                self._futures[channel].add((loop, future))
        try:
            await asyncio.wait_for(future, timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            with self._cond:
                for channel in seen:
                    self._futures[channel].discard((loop, future))


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


NOTIFIER = Notifier()


def announce(session: Session, channel: str) -> None:
    """Wake ``channel``'s waiters once ``session``'s transaction commits."""
    session.info.setdefault("coreplane_announce", set()).add(channel)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})


@event.listens_for(Session, "after_commit")
def _fire_after_commit(session: Session) -> None:
    for channel in session.info.pop("coreplane_announce", ()):
        NOTIFIER.fire(channel)


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop("coreplane_announce", None)


class Listener:
    """One PostgreSQL connection LISTENing on every channel, relaying to NOTIFIER;
    reconnects (with a capped backoff) when the store goes away."""

    def __init__(self, database_url: str) -> None:
        from controlplane.store.db import libpq_dsn

        self.dsn = libpq_dsn(database_url)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import psycopg

        failures = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    for channel in CHANNELS:
                        conn.execute(f"LISTEN {channel}")
                    failures = 0
                    # Whatever happened while we were not listening: wake everyone once.
                    for channel in CHANNELS:
                        NOTIFIER.fire(channel)
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            NOTIFIER.fire(note.channel)
            except psycopg.Error as exc:
                failures += 1
                if failures == 1:
                    log.warning("lost the LISTEN connection to the store: %s", exc)
                self._stop.wait(min(0.5 * 2**failures, 10.0))
