"""A thread of `coreplane serve` reading RabbitMQ queues into the store in batches (the
task events, the dead letters): it reconnects with a capped backoff when the broker or the
store goes away, logs the first failure of a run and every 30th, and never dies of one.
A subclass says how to connect (``connection``), how to read until stopped (``consume``)
and how to forget a batch that was not committed (``drop_batch``: unacked, it comes back).
"""

from __future__ import annotations

import logging
import threading

from kombu import Connection

BACKOFF_MAX_S = 10.0


class QueueReader:
    thread_name = "queue-reader"
    log = logging.getLogger("coreplane.queue_reader")

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def connection(self) -> Connection:
        raise NotImplementedError

    def consume(self, conn: Connection, *, idle_s: float | None, deadline: float | None) -> None:
        """Read until stopped, ``deadline`` (monotonic) or ``idle_s`` without a message."""
        raise NotImplementedError

    def drop_batch(self) -> None:
        raise NotImplementedError

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
