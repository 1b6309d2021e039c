"""Celery's events into the store: one thread per `coreplane serve`.

The events come through a durable queue of our own (``tasks.events_queue``) bound to
Celery's event exchange, so events sent while no control plane runs wait there and are
recorded when one comes back; several control planes read it as competing consumers.
The queue is bounded (a day's TTL, a million messages: RabbitMQ drops the oldest), and
the thread holds at most one batch (FLUSH_EVENTS events or FLUSH_S seconds, whichever
comes first): memory stays bounded however far behind the store is. A batch is acked
only once its transaction committed, so a crash in between redelivers it; history.record
folds a redelivered event without harm.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from kombu import Connection, Consumer, Queue, binding
from sqlalchemy import Engine

from controlplane.clock import utcnow
from controlplane.queue_reader import QueueReader
from controlplane.settings import Settings
from controlplane.store import partitions
from controlplane.store.db import make_sessionmaker
from controlplane.tasks import history

log = logging.getLogger("coreplane.tasks.monitor")

FLUSH_EVENTS = 500
FLUSH_S = 0.2
QUEUE_TTL_MS = 24 * 3600 * 1000
QUEUE_MAX_LENGTH = 1_000_000
MAX_WORKERS_KNOWN = 1000


def events_queue(app: Any, settings: Settings) -> Queue:
    """The durable, bounded queue on Celery's event exchange: task events and worker
    heartbeats (routing keys task.* and worker.*)."""
    from celery.events.event import get_exchange

    with app.connection_for_read() as conn:
        exchange = get_exchange(conn, name=app.conf.event_exchange)
    return Queue(
        settings.tasks.events_queue,
        bindings=[binding(exchange, routing_key="task.#"), binding(exchange, routing_key="worker.#")],
        durable=True,
        auto_delete=False,
        queue_arguments={"x-message-ttl": QUEUE_TTL_MS, "x-max-length": QUEUE_MAX_LENGTH},
    )


class TaskMonitor(QueueReader):
    """run_once() records what waits in the queue now (tests); start()/stop() run the
    same in a thread that reconnects, with a capped backoff, when the broker goes away."""

    thread_name = "task-monitor"
    flush_items, flush_s = FLUSH_EVENTS, FLUSH_S
    log = log

    def __init__(self, engine: Engine, settings: Settings, app: Any) -> None:
        """``app``: the process's Celery app (make_celery); the monitor opens its own
        connections from it."""
        self.engine = engine
        self.settings = settings
        self.sessions = make_sessionmaker(engine)
        self.app = app
        super().__init__()
        self._heartbeats: OrderedDict[str, datetime] = OrderedDict()
        self._lock = threading.Lock()
        # The one batch: owned by the consuming thread, nothing else touches it.
        self._events: list[dict] = []
        self._messages: list[Any] = []
        self.recorded = 0

    def heartbeats(self) -> dict[str, datetime]:
        """Worker name -> last heartbeat (or online event) this process heard."""
        with self._lock:
            return dict(self._heartbeats)

    def declare(self) -> None:
        """Make the events queue exist: from now on no event is lost while we are down."""
        with self.app.connection_for_read() as conn:
            events_queue(self.app, self.settings).bind(conn.default_channel).declare()

    def run_once(self, idle_s: float = 0.5, max_s: float = 30.0) -> int:
        """Record the events waiting now: until none comes for ``idle_s`` (or ``max_s``
        passed). Returns the task events recorded."""
        before = self.recorded
        with self.connection() as conn:
            self.consume(conn, idle_s=idle_s, deadline=time.monotonic() + max_s)
        return self.recorded - before

    def connection(self) -> Connection:
        return self.app.connection_for_read()

    def consume(self, conn: Connection, *, idle_s: float | None, deadline: float | None) -> None:
        queue = events_queue(self.app, self.settings)
        with Consumer(conn.default_channel, queues=[queue], callbacks=[self._on_message], accept=["json"],
                      prefetch_count=FLUSH_EVENTS, on_decode_error=self._unreadable):  # fmt: skip
            self.drain(conn, idle_s=idle_s, deadline=deadline)

    def buffered(self) -> int:
        return len(self._events)

    def _on_message(self, body: Any, message: Any) -> None:
        events = body if isinstance(body, list) else [body]
        task_events = [
            e for e in events if isinstance(e, dict) and str(e.get("type", "")).startswith("task-")
        ]
        self._note_workers(e for e in events if isinstance(e, dict))
        if not task_events:
            message.ack()  # heartbeats and the like: nothing to store
            return
        if not self._events:
            self._first_at = time.monotonic()
        self._events.extend(task_events)
        self._messages.append(message)

    def _unreadable(self, message: Any, exc: Exception) -> None:
        log.warning("task events: dropped a message that is not JSON: %s", exc)
        message.ack()

    def _note_workers(self, events: Any) -> None:
        for event in events:
            kind, name = event.get("type"), event.get("hostname")
            if kind not in ("worker-heartbeat", "worker-online") or not isinstance(name, str):
                continue
            try:
                seen = datetime.fromtimestamp(float(event["timestamp"]), UTC).replace(tzinfo=None)
            except (KeyError, TypeError, ValueError, OverflowError, OSError):
                seen = utcnow()
            with self._lock:
                self._heartbeats[name] = max(seen, self._heartbeats.get(name, seen))
                self._heartbeats.move_to_end(name)
                while len(self._heartbeats) > MAX_WORKERS_KNOWN:
                    self._heartbeats.popitem(last=False)

    def flush(self) -> None:
        """Record the batch in one transaction, then ack its messages."""
        events, messages = self._events, self._messages
        days = history.problem_days(events)
        if days and self.engine.dialect.name == "postgresql":
            with self.engine.begin() as conn:
                partitions.ensure_partitions(conn, table="infrastructure_events", days=days)
        with self.sessions.begin() as session:
            recorded = history.record(session, events, tasks=self.settings.tasks, now=utcnow())
        # One ack for the batch: its messages came in order on this one channel.
        messages[-1].ack(multiple=True)
        self._events, self._messages = [], []
        self.recorded += recorded

    def drop_batch(self) -> None:
        """After a lost connection: its unacked messages go back to the queue by themselves."""
        self._events, self._messages = [], []
