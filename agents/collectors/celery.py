"""Celery: workers online, active/reserved per worker, queue lengths (inspect and the
broker), and task succeeded/failed/retried counts and runtime (an events receiver).

The receiver thread is the only writer of the task counters and of the workers it heard
from; collect() reads a copy. A ping cannot know how many replies to wait for, so it waits
out its timeout, unless the workers' own heartbeat events say how many are up: then it
stops at that many (milliseconds, not 2 s per probe).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from celery import Celery
from kombu import Connection

from agents.collectors import Observation
from agents.collectors.base import Every
from agents.config import TargetConfig


class CeleryCollector:
    def __init__(self, target: TargetConfig) -> None:
        self.app = Celery(broker=target.address)
        self.timeout = target.timeout_s
        self.queues = list(target.options.get("queues", ["celery"]))
        # A ping reaches every worker on every probe; listing their tasks is a broadcast
        # and a reply per worker, so it runs at its own pace.
        self.inspect = Every(float(target.options.get("inspect_interval_s", 10)))
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._runtime_sum = 0.0
        self._heard: dict[str, tuple[float, float]] = {}  # worker -> (monotonic time, heartbeat period)
        self._stop = threading.Event()
        self._conn: Connection | None = None
        self._thread = threading.Thread(target=self._receive, name="celery-events", daemon=True)
        self._thread.start()

    def _on_event(self, event: dict) -> None:
        kind, worker = event.get("type", ""), event.get("hostname") or ""
        with self._lock:
            if kind == "worker-offline":
                self._heard.pop(worker, None)
            elif kind.startswith("worker-") and worker:
                self._heard[worker] = (time.monotonic(), float(event.get("freq") or 2.0))
            elif kind in ("task-succeeded", "task-failed", "task-retried"):
                self._counts[kind.removeprefix("task-")] += 1
                if kind == "task-succeeded":
                    self._runtime_sum += float(event.get("runtime") or 0)

    def _workers_up(self) -> int:
        """Workers whose last heartbeat is recent (Celery's own rule: within two periods)."""
        now = time.monotonic()
        with self._lock:
            return sum(1 for at, period in self._heard.values() if now - at < 2 * period)

    def _receive(self) -> None:
        # Blocks on the broker like Flower's capture loop; the thread is a daemon.
        while not self._stop.is_set():
            try:
                with self.app.connection_for_read() as conn:
                    receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
                    receiver.capture(limit=None, timeout=None, wakeup=True)
            except Exception:  # noqa: BLE001 - broker gone: retry while the agent runs
                self._stop.wait(2.0)

    def collect(self) -> Observation:
        obs = Observation()
        up = self._workers_up()
        replies = self.app.control.inspect(timeout=min(self.timeout, 2.0), limit=up or None).ping() or {}
        obs.add("coreplane_celery_workers_online", len(replies))
        if replies and self.inspect.due():
            # Stop listening as soon as every worker that answered the ping has replied.
            inspect = self.app.control.inspect(timeout=min(self.timeout, 2.0), limit=len(replies))
            active, reserved = inspect.active() or {}, inspect.reserved() or {}
            for worker in replies:
                obs.add("coreplane_celery_worker_active_tasks", len(active.get(worker, [])), worker=worker)
                obs.add(
                    "coreplane_celery_worker_reserved_tasks",
                    len(reserved.get(worker, [])),
                    worker=worker,
                )
        for queue, depth in self._depths():
            obs.add("coreplane_celery_queue_length", depth, queue=queue)
        with self._lock:
            counts, runtime = dict(self._counts), self._runtime_sum
        for state in ("succeeded", "failed", "retried"):
            obs.add("coreplane_celery_tasks_total", counts.get(state, 0), state=state)
        obs.add("coreplane_celery_task_runtime_seconds_total", runtime)
        if not replies:
            obs.status, obs.message = "critical", "no worker answered"
        else:
            obs.message = f"{len(replies)} worker(s) online"
        return obs

    def _depths(self) -> list[tuple[str, int]]:
        """Queue lengths over one kept broker connection (a passive declare per queue, each
        on its own channel since the broker closes the channel of a queue that is missing)."""
        if self._conn is None:
            self._conn = self.app.connection_for_read()
        depths = []
        try:
            for queue in self.queues:
                with self._conn.channel() as channel:
                    try:
                        depths.append((queue, channel.queue_declare(queue=queue, passive=True).message_count))
                    except self._conn.channel_errors:  # a queue nobody declared yet is empty
                        depths.append((queue, 0))
        except Exception:
            self._conn.collect()
            self._conn = None
            raise
        return depths

    def close(self) -> None:
        self._stop.set()
        if self._conn is not None:
            self._conn.collect()
