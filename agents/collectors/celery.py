"""Celery: workers online, active/reserved per worker, per queue its length, consumers, the
age of its oldest message, and the wait (due -> started) and runtime of its tasks over a
recent window; per task name, succeeded/failed/retried counts (an events receiver).

The receiver thread is the only writer of the ledger and of the workers it heard from;
collect() reads a copy. A ping cannot know how many replies to wait for, so it waits out
its timeout, unless the workers' own heartbeat events say how many are up: then it stops
at that many (milliseconds, not 2 s per probe).

Options: ``queues`` (probed for length and consumers, besides every queue task-sent events
name), ``management_url`` (RabbitMQ's management API, for the oldest message's age),
``window_s`` (the quantiles' window, 60), ``max_task_names`` (200: more names are counted
as "other"), ``inspect_interval_s`` (10).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

from celery import Celery
from kombu import Connection

from agents.collectors import Observation
from agents.collectors.base import Every
from agents.config import TargetConfig
from agents.http import HttpClient

STATES = ("succeeded", "failed", "retried")
QUANTILES = (0.5, 0.95)
OTHER = "other"  # the label of names (and queues) past the cap
UNKNOWN = "unknown"  # a task whose name no event of this receiver carried
MAX_QUEUES = 50  # queues with figures of their own; the rest are "other"
MAX_TRACKED = 20_000  # task ids between sent and finished whose name and queue are kept
MAX_SAMPLES = 5_000  # wait or runtime samples kept per queue within the window
MAX_LABEL = 200  # characters of a task or queue name used as a label


@dataclass
class Pending:
    name: str
    queue: str | None  # known from task-sent only
    due: float  # when it could start: sent (or received), or its ETA if later


def _due(event: dict) -> float:
    """The event's time, or the task's ETA (a countdown, a retry's backoff) when later:
    the wait counts only the time a due task waited for a worker."""
    at = float(event.get("timestamp") or time.time())
    eta = event.get("eta")
    if not isinstance(eta, str):
        return at
    try:
        when = datetime.fromisoformat(eta)
    except ValueError:
        return at
    return max(at, (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted ``values`` (not empty)."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


class TaskLedger:
    """What task events say: names and queues of tasks in flight (bounded), counts per
    name (capped), and recent wait and runtime samples per queue. Not thread-safe: the
    collector holds its lock around every call."""

    def __init__(self, *, window_s: float, max_names: int) -> None:
        self.window_s, self.max_names = window_s, max_names
        self.pending: OrderedDict[str, Pending] = OrderedDict()
        self.counts: dict[str, Counter[str]] = {}
        self.totals: Counter[str] = Counter()
        self.runtime_sum = 0.0
        self.seen_queues: dict[str, None] = {}  # in the order first seen, capped
        self.waits: dict[str, deque[tuple[float, float]]] = {}
        self.runtimes: dict[str, deque[tuple[float, float]]] = {}

    def on_event(self, event: dict) -> None:
        kind, task_id = event.get("type", ""), str(event.get("uuid") or "")
        if not kind.startswith("task-") or not task_id:
            return
        at = float(event.get("timestamp") or time.time())
        if kind == "task-sent":
            self._track(task_id, Pending(self._name(event), self._queue(event.get("queue")), _due(event)))
        elif kind == "task-received" and task_id not in self.pending:
            self._track(task_id, Pending(self._name(event), None, _due(event)))
        elif kind == "task-started":
            task = self.pending.get(task_id)
            if task is not None and task.queue is not None:
                self._sample(self.waits, task.queue, at, max(0.0, at - task.due))
        elif kind in ("task-succeeded", "task-failed", "task-retried"):
            self._finished(kind.removeprefix("task-"), task_id, at, event)
        elif kind == "task-revoked":
            self.pending.pop(task_id, None)
        # task-rejected: a task failing for good is rejected (to be dead-lettered) just before
        # its task-failed, which still needs its name.

    def _finished(self, state: str, task_id: str, at: float, event: dict) -> None:
        # A retried task stays tracked: its next attempt is sent again under the same id.
        task = self.pending.get(task_id) if state == "retried" else self.pending.pop(task_id, None)
        name = task.name if task is not None else UNKNOWN
        self.counts.setdefault(name, Counter())[state] += 1
        self.totals[state] += 1
        if state == "succeeded":
            runtime = float(event.get("runtime") or 0)
            self.runtime_sum += runtime
            if task is not None and task.queue is not None:
                self._sample(self.runtimes, task.queue, at, runtime)

    def _track(self, task_id: str, task: Pending) -> None:
        self.pending[task_id] = task
        self.pending.move_to_end(task_id)
        while len(self.pending) > MAX_TRACKED:  # tasks whose end was never heard
            self.pending.popitem(last=False)

    def _name(self, event: dict) -> str:
        name = str(event.get("name") or UNKNOWN)[:MAX_LABEL]
        if name in self.counts or len(self.counts) < self.max_names:
            self.counts.setdefault(name, Counter())
            return name
        return OTHER

    def _queue(self, queue: object) -> str | None:
        if not queue:
            return None
        name = str(queue)[:MAX_LABEL]
        if name in self.seen_queues or len(self.seen_queues) < MAX_QUEUES:
            self.seen_queues[name] = None
            return name
        return OTHER

    def _sample(
        self, into: dict[str, deque[tuple[float, float]]], queue: str, at: float, value: float
    ) -> None:
        into.setdefault(queue, deque(maxlen=MAX_SAMPLES)).append((at, value))

    def queues(self) -> list[str]:
        return list(self.seen_queues)

    def quantiles(self, into: dict[str, deque[tuple[float, float]]], now: float) -> dict[str, list[float]]:
        """Queue -> its samples within the window, sorted (queues without any left out)."""
        found = {}
        for queue, samples in into.items():
            while samples and samples[0][0] < now - self.window_s:
                samples.popleft()
            if samples:
                found[queue] = sorted(value for _, value in samples)
        return found


class CeleryCollector:
    def __init__(self, target: TargetConfig) -> None:
        self.app = Celery(broker=target.address)
        self.timeout = target.timeout_s
        self.queues = list(target.options.get("queues", ["celery"]))
        # A ping reaches every worker on every probe; listing their tasks is a broadcast
        # and a reply per worker, so it runs at its own pace.
        self.inspect = Every(float(target.options.get("inspect_interval_s", 10)))
        management = target.options.get("management_url")
        self.management = HttpClient(management, timeout_s=target.timeout_s) if management else None
        self.vhost = unquote(urlsplit(target.address).path.lstrip("/")) or "/"
        self._lock = threading.Lock()
        self._ledger = TaskLedger(
            window_s=float(target.options.get("window_s", 60)),
            max_names=int(target.options.get("max_task_names", 200)),
        )
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
            else:
                self._ledger.on_event(event)

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
            self._worker_tasks(obs, list(replies))
        self._queue_figures(obs)
        self._task_figures(obs)
        if not replies:
            obs.status, obs.message = "critical", "no worker answered"
        else:
            obs.message = f"{len(replies)} worker(s) online"
        return obs

    def _worker_tasks(self, obs: Observation, workers: list[str]) -> None:
        # Stop listening as soon as every worker that answered the ping has replied.
        inspect = self.app.control.inspect(timeout=min(self.timeout, 2.0), limit=len(workers))
        active, reserved = inspect.active() or {}, inspect.reserved() or {}
        for worker in workers:
            obs.add("coreplane_celery_worker_active_tasks", len(active.get(worker, [])), worker=worker)
            obs.add("coreplane_celery_worker_reserved_tasks", len(reserved.get(worker, [])), worker=worker)

    def _queue_figures(self, obs: Observation) -> None:
        with self._lock:
            seen = self._ledger.queues()
        queues = list(dict.fromkeys([*self.queues, *seen]))
        for queue, depth, consumers in self._depths(queues):
            obs.add("coreplane_celery_queue_length", depth, queue=queue)
            obs.add("coreplane_celery_queue_consumers", consumers, queue=queue)
            if self.management is not None:
                obs.add("coreplane_celery_queue_oldest_age_seconds", self._oldest_age(queue), queue=queue)

    def _oldest_age(self, queue: str) -> float | None:
        """Seconds since the queue's oldest ready message was sent (its AMQP timestamp, which
        coreplane's Celery app sets); 0 when none is ready; None when the management API does
        not know the queue or the message carries no timestamp."""
        assert self.management is not None
        answer = self.management.get(
            f"/api/queues/{quote(self.vhost, safe='')}/{quote(queue, safe='')}",
            columns="messages_ready,head_message_timestamp",
        )
        if answer.status == 404:
            return None
        answer.raise_for_status()
        body = answer.json()
        if not isinstance(body, dict):  # a queue declared a moment ago: "[]" until its first stats
            return None
        if not body.get("messages_ready"):
            return 0.0
        head = body.get("head_message_timestamp")
        return max(0.0, time.time() - float(head)) if isinstance(head, int | float) else None

    def _task_figures(self, obs: Observation) -> None:
        now = time.time()
        with self._lock:
            ledger = self._ledger
            totals, runtime = dict(ledger.totals), ledger.runtime_sum
            counts = {name: dict(c) for name, c in ledger.counts.items()}
            waits, runtimes = ledger.quantiles(ledger.waits, now), ledger.quantiles(ledger.runtimes, now)
        for state in STATES:
            obs.add("coreplane_celery_tasks_total", totals.get(state, 0), state=state)
        obs.add("coreplane_celery_task_runtime_seconds_total", runtime)
        for name, by_state in counts.items():
            for state in STATES:  # zeros too: a rate needs the series before the first failure
                obs.add("coreplane_celery_task_events_total", by_state.get(state, 0), task=name, state=state)
        for q in QUANTILES:
            for queue, values in waits.items():
                obs.add(
                    "coreplane_celery_task_wait_seconds", quantile(values, q), queue=queue, quantile=str(q)
                )
            for queue, values in runtimes.items():
                obs.add(
                    "coreplane_celery_task_runtime_seconds", quantile(values, q), queue=queue, quantile=str(q)
                )

    def _depths(self, queues: list[str]) -> list[tuple[str, int, int]]:
        """(queue, length, consumers) over one kept broker connection (a passive declare per
        queue, each on its own channel since the broker closes the channel of a queue that is
        missing)."""
        if self._conn is None:
            self._conn = self.app.connection_for_read()
        found = []
        try:
            for queue in queues:
                with self._conn.channel() as channel:
                    try:
                        ok = channel.queue_declare(queue=queue, passive=True)
                        found.append((queue, ok.message_count, ok.consumer_count))
                    except self._conn.channel_errors:  # a queue nobody declared yet is empty
                        found.append((queue, 0, 0))
        except Exception:
            self._conn.collect()
            self._conn = None
            raise
        return found

    def close(self) -> None:
        self._stop.set()
        if self._conn is not None:
            self._conn.collect()
        if self.management is not None:
            self.management.close()
