"""Background tasks: coreplane's task library (make_celery + `coreplane worker`) against bare
Celery with its default settings (a plain ``Celery(broker, backend)`` app and a plain
`celery worker`), on the same RabbitMQ and Redis, the same worker count and concurrency,
in the same run; every measurement on a RabbitMQ virtual host of its own.

- task_latency_p99_ms: enqueue -> task start at a steady LATENCY_RATE per second (a rate
  the workers keep up with: latency, not a backlog). The sender passes time.time() as an
  argument, the task records its own start time; one host clock. The two sides take turns
  in BLOCKS blocks each, so load from elsewhere on the machine falls on both alike.
- task_throughput_ratio: THROUGHPUT_COUNT no-op tasks enqueued with no worker running,
  then drained by one worker of CONCURRENCY processes; tasks per second from the first
  start to the last finish, as the tasks stamp them. ROUNDS rounds, the sides in turn;
  each side's best round counts (others' load on the machine only ever slows a round).
- task_event_capture_lag_p99_ms: task finished (the task-succeeded event's own time
  stamp, taken by the worker) -> its TaskRun row finished in the store, at LAG_RATE tasks
  per second, with the control plane's TaskMonitor (controlplane/tasks/monitor.py) reading
  the events into a PostgreSQL store of its own. No baseline exists: the ratio is against
  the 1000 ms goal.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import psutil
import redis
import sqlalchemy as sa
from celery import Celery
from kombu import Queue

from controlplane.settings import Settings
from controlplane.store.db import make_engine
from controlplane.store.models import TaskRun
from tests.support.processes import coreplane_bin, coreplane_env
from tests.support.results import Result
from tests.support.services import ROOT, require
from tests.support.stores import fresh_schema
from tests.support.tasks import celery_app, stop_worker, task_broker, task_settings, tasks_env
from tests.support.timing import until

LATENCY_RATE = float(os.environ.get("BENCH_TASKS_RATE", 50))
LATENCY_S = float(os.environ.get("BENCH_TASKS_LATENCY_S", 20))
BLOCKS = int(os.environ.get("BENCH_TASKS_BLOCKS", 4))
THROUGHPUT_COUNT = int(os.environ.get("BENCH_TASKS_COUNT", 5000))
ROUNDS = int(os.environ.get("BENCH_TASKS_ROUNDS", 2))
LAG_RATE = float(os.environ.get("BENCH_TASKS_LAG_RATE", 200))
LAG_S = float(os.environ.get("BENCH_TASKS_LAG_S", 15))
CONCURRENCY = 2  # worker processes on each side (one worker, prefork pool of 2)
JOBS = "bench.tasks_jobs"
STALL_S = 10.0  # seconds without a row newly finished: the capture is over
POLL_S = 0.01  # how often the store is polled for finished rows
WARM_UP = 20  # tasks per side before the latency is measured (the pool's first tasks)
LATENCY_GOAL_MS, LATENCY_RATIO_GOAL, THROUGHPUT_GOAL, LAG_GOAL_MS = 50.0, 1.1, 0.9, 1000.0


@dataclass
class Side:
    """One side of the comparison: the app that sends and how to start its worker."""

    label: str
    app: Celery
    argv: list[str]
    env: dict[str, str]
    worker: str  # the worker's node name, for the ping that says it is ready


def coreplane_side(settings: Settings, broker: str, concurrency: int = CONCURRENCY) -> Side:
    from controlplane.tasks import make_celery

    tasks = task_settings(settings, broker, modules=[JOBS])
    name = f"coreplane-{secrets.token_hex(3)}@bench"
    argv = [coreplane_bin(), "worker", f"--concurrency={concurrency}", f"--name={name}"]
    env = tasks_env(tasks) | {"BENCH_REDIS_URL": _redis_url(settings)}
    return Side("coreplane", make_celery(tasks), argv, env, name)


def bare_side(settings: Settings, broker: str, concurrency: int = CONCURRENCY) -> Side:
    backend = _redis_url(settings)
    name = f"bare-{secrets.token_hex(3)}@bench"
    argv = [sys.executable, "-m", "celery", "-A", "bench.tasks_bare", "worker",
            f"--concurrency={concurrency}", f"--hostname={name}"]  # fmt: skip
    env = coreplane_env(False) | {
        "PYTHONPATH": str(ROOT), "BENCH_BROKER": broker, "BENCH_BACKEND": backend, "BENCH_REDIS_URL": backend,
    }  # fmt: skip
    return Side("bare", Celery("bare", broker=broker, backend=backend, set_as_current=False), argv, env, name)


def _redis_url(settings: Settings) -> str:
    require(settings.redis.url, "redis")
    return settings.redis.url or ""


@contextmanager
def worker(side: Side, log: Path) -> Iterator[subprocess.Popen]:
    """The side's worker, answering a ping before this yields; stopped on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(side.argv, env=side.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)  # fmt: skip
    tail = lambda: log.read_text(errors="replace")[-3000:]  # noqa: E731

    def pinged() -> list:
        if proc.poll() is not None:
            raise RuntimeError(f"the {side.label} worker exited before answering a ping:\n{tail()}")
        return side.app.control.ping(timeout=1, destination=[side.worker])

    try:
        until(f"the {side.label} worker to answer a ping", pinged, timeout_s=60, every_s=0, logs=tail)
        yield proc
    finally:
        stop_worker(proc)


def _pairs(client: redis.Redis, key: str) -> list[tuple[float, float]]:
    return [tuple(map(float, raw.split())) for raw in client.lrange(key, 0, -1)]  # type: ignore[misc]


def _recorded(
    client: redis.Redis, key: str, count: int, timeout_s: float, logs: Path
) -> list[tuple[float, float]]:
    until(f"{count} tasks recorded in {key}", lambda: client.llen(key) >= count, timeout_s, 0.05,
          logs=lambda: logs.read_text(errors="replace")[-3000:])  # fmt: skip
    pairs = _pairs(client, key)
    client.delete(key)
    return pairs


def _send_paced(app: Celery, key: str, rate: float, count: int) -> None:
    """``count`` bench.stamp tasks, one every 1/``rate`` s on a fixed schedule (a late send
    does not shift the ones after it)."""
    start = time.monotonic()
    for i in range(count):
        ahead = start + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)  # pacing the sender, not waiting for an outcome
        app.send_task("bench.stamp", (key, time.time()))


def _quantile(values: list[float], q: int) -> float:
    """The q-th percentile (statistics' exclusive method), or the only value."""
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def latency(settings: Settings, work: Path, rate: float = LATENCY_RATE, seconds: float = LATENCY_S,
            blocks: int = BLOCKS) -> dict[str, list[float]]:  # fmt: skip
    """Milliseconds from send to start of each task, by side."""
    client = redis.Redis.from_url(_redis_url(settings))
    per_block = max(1, round(rate * seconds / blocks))
    found: dict[str, list[float]] = {"coreplane": [], "bare": []}
    with ExitStack() as stack:
        sides = [
            make(settings, stack.enter_context(task_broker(settings))) for make in (coreplane_side, bare_side)
        ]
        for side in sides:
            stack.enter_context(worker(side, work / f"latency-{side.label}.log"))
        for side in sides:  # the pools' first tasks (imports, connections) are not measured
            key = f"bench:tasks:warm:{secrets.token_hex(4)}"
            _send_paced(side.app, key, rate, WARM_UP)
            _recorded(client, key, WARM_UP, 30, work / f"latency-{side.label}.log")
        for _ in range(blocks):
            for side in sides:
                key = f"bench:tasks:latency:{secrets.token_hex(4)}"
                _send_paced(side.app, key, rate, per_block)
                pairs = _recorded(
                    client, key, per_block, 30 + per_block / rate, work / f"latency-{side.label}.log"
                )
                found[side.label].extend((started - sent) * 1000 for sent, started in pairs)
    client.close()
    return found


@dataclass
class Drain:
    per_s: float  # tasks per second, first start to last finish
    cpu_ms: float  # worker CPU (main process and pool) per task: what others' load skews least


def _cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live children (a worker and its pool)."""
    main = psutil.Process(pid)
    procs = [main, *main.children(recursive=True)]
    return sum(t.user + t.system for t in (p.cpu_times() for p in procs))


def _drain(settings: Settings, make, count: int, work: Path) -> Drain:  # type: ignore[no-untyped-def]
    """``count`` no-op tasks queued before the worker starts, then drained."""
    client = redis.Redis.from_url(_redis_url(settings))
    key = f"bench:tasks:noop:{secrets.token_hex(4)}"
    with task_broker(settings) as broker:
        side = make(settings, broker)
        for _ in range(count):
            side.app.send_task("bench.noop", (key,))
        log = work / f"throughput-{side.label}.log"
        with worker(side, log) as proc:
            cpu, since = _cpu_s(proc.pid), time.time()
            pairs = _recorded(client, key, count, 60 + count / 50, log)
            cpu = _cpu_s(proc.pid) - cpu
    client.close()
    span = max(end for _, end in pairs) - min(start for start, _ in pairs)
    # The pool starts on the backlog before the worker answers its ping: the CPU counted
    # from then on is that of the tasks started since (0 if every task was done by then).
    later = sum(1 for start, _ in pairs if start >= since)
    return Drain(count / span, cpu * 1000 / later if later else 0.0)


def throughput(settings: Settings, work: Path, count: int = THROUGHPUT_COUNT,
               rounds: int = ROUNDS) -> dict[str, list[Drain]]:  # fmt: skip
    """Each round's drain, by side, the sides in turn."""
    found: dict[str, list[Drain]] = {"coreplane": [], "bare": []}
    for _ in range(rounds):
        for label, make in (("coreplane", coreplane_side), ("bare", bare_side)):
            drain = _drain(settings, make, count, work)
            found[label].append(drain)
            print(f"bench: tasks throughput {label} {drain.per_s:,.0f}/s, {drain.cpu_ms:.2f} ms CPU per task",
                  flush=True)  # fmt: skip
    return found


# What a throughput gap against bare Celery may come from: each of coreplane's Celery
# settings put back to Celery's default alone, then all at once (BENCH_TASKS_DIAGNOSE=1).
VARIANTS: dict[str, dict] = {
    "as shipped": {},
    "acks early, prefetch x4": {"task_acks_late": False, "worker_prefetch_multiplier": 4},
    "no events": {"events": False, "worker_send_task_events": False, "task_send_sent_event": False},
    "no STARTED state": {"task_track_started": False},
    "no extended results": {"result_extended": False},
    "no time limits": {"time_limits": False},
    "log level WARNING": {"loglevel": "WARNING"},
    "queues without priority": {"plain_queues": True},
}
SWITCHES = ("events", "loglevel", "plain_queues", "time_limits")  # bench/tasks_variant.py's own
VARIANTS["all of these"] = {k: v for variant in VARIANTS.values() for k, v in variant.items()}


def variant_side(settings: Settings, broker: str, variant: dict) -> Side:
    """coreplane's side with ``variant`` (bench/tasks_variant.py) on its worker and sender."""
    side = coreplane_side(settings, broker)
    side.argv = [sys.executable, "-m", "bench.tasks_variant", json.dumps(variant),
                 f"--concurrency={CONCURRENCY}", f"--hostname={side.worker}"]  # fmt: skip
    if variant.get("plain_queues"):
        side.app.conf.task_queues = [
            Queue(name, routing_key=name) for name in [q.name for q in side.app.conf.task_queues]
        ]
    side.app.conf.update({k: v for k, v in variant.items() if k not in SWITCHES})
    return side


def diagnose(
    settings: Settings, work: Path, count: int = THROUGHPUT_COUNT, rounds: int = ROUNDS
) -> dict[str, Drain]:
    """Each variant's best drain over ``rounds`` rounds (the variants in turn), bare
    Celery's last: the highest rate and the least CPU per task, the figures others' load
    on the machine skews least."""
    makers = {label: lambda s, b, v=variant: variant_side(s, b, v) for label, variant in VARIANTS.items()}
    makers["bare Celery"] = bare_side
    drains: dict[str, list[Drain]] = {label: [] for label in makers}
    for _ in range(rounds):
        for label, make in makers.items():
            drains[label].append(_drain(settings, make, count, work))
    found = {
        label: Drain(
            max(d.per_s for d in runs),
            min(d.cpu_ms for d in runs if d.cpu_ms) if any(d.cpu_ms for d in runs) else 0.0,
        )
        for label, runs in drains.items()
    }
    for label, drain in found.items():
        print(f"bench: tasks throughput, {label}: {drain.per_s:,.0f}/s, {drain.cpu_ms:.2f} ms worker CPU per task",
              flush=True)  # fmt: skip
    return found


class _Visibility(threading.Thread):
    """Polls the store for the sent tasks' rows: when each was first seen finished (the
    query's return, so a little late: the lag is never under-counted)."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(name="bench-visibility", daemon=True)
        self.engine = engine
        self.waiting: set[str] = set()
        self.lags: list[float] = []  # seconds
        self.lock = threading.Lock()
        self.done = threading.Event()

    def expect(self, task_id: str) -> None:
        with self.lock:
            self.waiting.add(task_id)

    def left(self) -> int:
        with self.lock:
            return len(self.waiting)

    def run(self) -> None:
        with self.engine.connect() as conn:
            while not self.done.is_set():
                with self.lock:
                    ids = list(self.waiting)[:2000]
                if ids:
                    query = sa.select(TaskRun.task_id, TaskRun.finished_at).where(
                        TaskRun.task_id.in_(ids), TaskRun.state == "SUCCESS"
                    )
                    rows = conn.execute(query).all()
                    conn.rollback()  # the next poll sees what committed since
                    seen = time.time()
                    with self.lock:
                        for task_id, finished in rows:
                            self.waiting.discard(task_id)
                            self.lags.append(seen - finished.replace(tzinfo=UTC).timestamp())
                self.done.wait(POLL_S)


@dataclass
class Capture:
    lags_ms: list[float]  # of the tasks seen finished in the store
    sent: int
    stuck: dict[str, int]  # state -> tasks whose row never showed them finished


def _settled(poller: _Visibility, timeout_s: float, log: Path, stall_s: float) -> None:
    """Until every expected row is seen finished, or none more has been for ``stall_s`` (rows
    that will never be: what is left is the capture's to report, not a reason to hang)."""
    last = {"left": -1, "at": time.monotonic()}

    def settled() -> bool:
        left = poller.left()
        if left != last["left"]:
            last.update(left=left, at=time.monotonic())
        return left == 0 or time.monotonic() - last["at"] >= stall_s

    until("the task runs finished in the store", settled, timeout_s, 0.05,
          logs=lambda: log.read_text(errors="replace")[-3000:])  # fmt: skip


def _stuck(poller: _Visibility) -> dict[str, int]:
    with poller.lock:
        ids, poller.waiting = list(poller.waiting), set()
    states: dict[str, int] = {}
    with poller.engine.connect() as conn:
        for start in range(0, len(ids), 1000):
            query = sa.select(TaskRun.state).where(TaskRun.task_id.in_(ids[start : start + 1000]))
            for (state,) in conn.execute(query):
                states[state] = states.get(state, 0) + 1
    if sum(states.values()) < len(ids):
        states["no row"] = len(ids) - sum(states.values())
    return states


def capture_lag(settings: Settings, work: Path, rate: float = LAG_RATE, seconds: float = LAG_S,
                stall_s: float = STALL_S) -> Capture:  # fmt: skip
    """How long from each task's finish (its task-succeeded event's time stamp) until its
    TaskRun row is finished in a PostgreSQL store the TaskMonitor writes, as
    `coreplane serve` runs it."""
    from controlplane.tasks.monitor import TaskMonitor

    count = max(1, round(rate * seconds))
    with task_broker(settings) as broker, fresh_schema(settings) as url:
        engine = make_engine(url)
        side = coreplane_side(settings, broker)
        monitored = task_settings(settings, broker, modules=[JOBS])
        monitor = TaskMonitor(engine, monitored, celery_app(monitored))
        monitor.declare()
        monitor.start()
        poller = _Visibility(engine)
        poller.start()
        log = work / "capture-lag.log"
        try:
            with worker(side, log):
                for _ in range(WARM_UP):  # the pool's and the monitor's first batch are not measured
                    poller.expect(side.app.send_task("bench.nothing").id)
                _settled(poller, 60, log, stall_s)
                _stuck(poller)
                with poller.lock:
                    poller.lags.clear()
                start = time.monotonic()
                for i in range(count):
                    ahead = start + i / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)  # pacing the sender
                    poller.expect(side.app.send_task("bench.nothing").id)
                _settled(poller, 120 + seconds, log, stall_s)
                stuck = _stuck(poller)
        finally:
            poller.done.set()
            poller.join(10)
            monitor.stop()
            engine.dispose()
    return Capture([lag * 1000 for lag in poller.lags], count, stuck)


def latency_result(found: dict[str, list[float]], rate: float = LATENCY_RATE, blocks: int = BLOCKS) -> Result:
    ours, bare = found["coreplane"], found["bare"]
    p99, bare_p99 = _quantile(ours, 99), _quantile(bare, 99)
    return Result(
        name="task_latency_p99_ms", ours=round(p99, 2), baseline=round(bare_p99, 2),
        unit=f"ms p99 from send to task start, {len(ours)} tasks per side at {rate:g}/s in {blocks} "
             f"alternating blocks, 1 worker x {CONCURRENCY} processes each; p50 coreplane "
             f"{_quantile(ours, 50):.2f} vs bare Celery {_quantile(bare, 50):.2f} (default settings, same broker)",
        goal=f"p99 < {LATENCY_GOAL_MS:g} ms and ratio <= {LATENCY_RATIO_GOAL}",
        met=p99 < LATENCY_GOAL_MS and p99 / bare_p99 <= LATENCY_RATIO_GOAL,
    )  # fmt: skip


def throughput_result(found: dict[str, list[Drain]], count: int = THROUGHPUT_COUNT) -> Result:
    ours = max(found["coreplane"], key=lambda d: d.per_s)
    bare = max(found["bare"], key=lambda d: d.per_s)
    rounds = lambda label: " / ".join(f"{d.per_s:,.0f}" for d in found[label])  # noqa: E731
    return Result(
        name="task_throughput_ratio", ours=round(ours.per_s, 1), baseline=round(bare.per_s, 1),
        unit=f"no-op tasks/s, {count:,} queued then drained by 1 worker x {CONCURRENCY} processes, first "
             f"start to last finish, best of {len(found['coreplane'])} rounds (coreplane {rounds('coreplane')}, "
             f"bare Celery {rounds('bare')}); worker CPU per task {ours.cpu_ms:.2f} vs {bare.cpu_ms:.2f} ms",
        goal=f"ratio >= {THROUGHPUT_GOAL}", met=ours.per_s / bare.per_s >= THROUGHPUT_GOAL,
    )  # fmt: skip


def lag_result(capture: Capture, rate: float = LAG_RATE) -> Result:
    lags = capture.lags_ms or [float("inf")]
    p99 = _quantile(lags, 99)
    stuck = sum(capture.stuck.values())
    never = (
        f"; {stuck:,} of {capture.sent:,} never shown finished ("
        + ", ".join(f"{n:,} {state}" for state, n in sorted(capture.stuck.items()))
        + ")"
        if stuck
        else ""
    )
    return Result(
        name="task_event_capture_lag_p99_ms", ours=round(p99, 1), baseline=None,
        ratio=round(p99 / LAG_GOAL_MS, 3),
        unit=f"ms p99 from a task's finish (its task-succeeded event's time stamp) to its TaskRun row "
             f"finished in a PostgreSQL store, {capture.sent:,} tasks at {rate:g}/s, TaskMonitor as in "
             f"`coreplane serve`; p50 {_quantile(lags, 50):.1f} ms, max {max(lags):.1f} ms{never}; no "
             f"baseline exists: the ratio is against the {LAG_GOAL_MS:g} ms goal",
        goal=f"< {LAG_GOAL_MS:g} ms, every task shown finished", met=p99 < LAG_GOAL_MS and not stuck,
    )  # fmt: skip


def run(settings: Settings) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        work = Path(tmp)
        found = latency(settings, work)
        for label, values in found.items():
            print(f"bench: tasks latency {label} p50 {_quantile(values, 50):.2f} ms "
                  f"p99 {_quantile(values, 99):.2f} ms max {max(values):.2f} ms", flush=True)  # fmt: skip
        results = [latency_result(found), throughput_result(throughput(settings, work))]
        results.append(lag_result(capture_lag(settings, work)))
        if os.environ.get("BENCH_TASKS_DIAGNOSE"):
            diagnose(settings, work)
    return results
