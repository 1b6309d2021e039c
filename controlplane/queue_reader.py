"""A thread of `coreplane serve` reading RabbitMQ queues into the store in batches (the
task events, the dead letters): it reconnects with a capped backoff when the broker or the
store goes away, logs the first failure of a run and every 30th, and never dies of one.
A subclass says how to connect (``connection``), how to read until stopped (``consume``,
which sets up its kombu Consumer and calls ``drain``), how big its batch is (``buffered``),
how to write and ack it (``flush``) and how to forget one that was not committed
(``drop_batch``: unacked, it comes back).
"""

from __future__ import annotations

import logging
import threading
import time

from kombu import Connection

BACKOFF_MAX_S = 10.0


class QueueReader:
    thread_name = "queue-reader"
    log = logging.getLogger("coreplane.queue_reader")
    flush_items = 100  # a batch is written at this many items ...
    flush_s = 0.2  # ... or this long after its first, whichever comes first

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_at = 0.0  # when the batch held now began (set by the subclass)

    def connection(self) -> Connection:
        raise NotImplementedError

    def consume(self, conn: Connection, *, idle_s: float | None, deadline: float | None) -> None:
        """Read until stopped, ``deadline`` (monotonic) or ``idle_s`` without a message."""
        raise NotImplementedError

    def buffered(self) -> int:
        """Items in the batch held now (0: none)."""
        raise NotImplementedError

    def flush(self) -> None:
        """Write the batch held now in one transaction, then ack its messages."""
        raise NotImplementedError

    def drop_batch(self) -> None:
        raise NotImplementedError

    def drain(self, conn: Connection, *, idle_s: float | None, deadline: float | None) -> None:
        """Take deliveries on ``conn`` (the consumer is the caller's) and write them in
        batches, until stopped, ``deadline`` (monotonic) or ``idle_s`` without a message;
        the batch held at the end is written too."""
        idle_since = time.monotonic()
        while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
            conn.heartbeat_check()  # a broker gone silent is noticed, not waited on forever
            wait = self.flush_s - (time.monotonic() - self._first_at) if self.buffered() else 1.0
            try:
                conn.drain_events(timeout=max(0.01, wait))
                idle_since = time.monotonic()
            except TimeoutError:
                if idle_s is not None and not self.buffered() and time.monotonic() - idle_since >= idle_s:
                    break
            held = self.buffered()
            if held and (held >= self.flush_items or time.monotonic() - self._first_at >= self.flush_s):
                self.flush()
        if self.buffered():
            self.flush()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with self.connection() as conn:
                    conn.ensure_connection(max_retries=1)
                    failures = 0
                    self.consume(conn, idle_s=None, deadline=None)
            except Exception as exc:  # noqa: BLE001 - broker or store away: keep trying, never die
                failures += 1
                self.drop_batch()
                if failures == 1 or failures % 30 == 0:
                    self.log.warning("%s (%d failure(s) in a row); retrying", exc, failures)
                self._stop.wait(min(0.5 * 2 ** min(failures, 10), BACKOFF_MAX_S))
