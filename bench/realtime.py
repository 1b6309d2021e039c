"""Realtime: `/ws/rt` of a real `coreplane serve` on the Redis channel layer against the bare
Channels consumer (tests/support/realtime_bare.py under uvicorn, ``group_send`` on the same
Redis), in the same run; and the room history's store, a Redis stream against a table.

- ws_broadcast_p99_ms: MEMBERS clients in one room on each side, held by CLIENT_PROCS client
  processes (one asyncio process reading 1,000 frames per message is CPU-bound on its own).
  A publisher socket in this process sends a message carrying time.perf_counter() (Linux's
  CLOCK_MONOTONIC: the same clock in every process of the machine); each client process
  notes when its last member got it, and the latency of a message is the latest of those
  notes minus the send time. The next message goes once the last one reached everyone (or
  after DONE_TIMEOUT_S), then a GAP_S pause: latency, not a backlog. The sides take turns in
  BLOCKS blocks. A drop is a message some member never got. Both publishers are members
  too (the bare consumer's sender is always in its group), so both fan out to MEMBERS + 1.
- ws_connections_per_gb: CONNECTIONS idle connections (a token and one subscribe each on
  ours, in rooms of ROOM_SIZE; the bare consumer joins the same rooms by URL), opened in
  batches from CLIENT_PROCS processes on their own loopback addresses; the server's RSS
  growth over its idle baseline (taken after a warm-up round was opened and closed).
- ws_resume_gap: RESUME_CYCLES disconnect / reconnect-with-``since`` cycles of one client,
  alternating between two servers behind the same Redis, while a publisher on the first
  sends RESUME_RATE messages a second; every sequence the client sees is checked against
  the one before it (lost = skipped, duplicated = seen twice).
- rt_history_append_*: the room history's write path (docs/decisions/0009): RedisRooms.append
  (INCR + XADD with MAXLEN and age trimming, one Lua script) against a PostgreSQL table
  (the per-room sequence taken by an upsert and the row inserted in one statement, so one
  transaction, committed per message), one append at a time, in alternating blocks.

Clients ask for no permessage-deflate (its zlib state per connection would weigh the same
on both sides and hide the servers' own cost); every server runs with a 300 s heartbeat so
idle clients need not ping.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

import psutil
import websockets
from websockets.exceptions import ConnectionClosed

from bench.common import quantile
from controlplane.settings import Settings
from tests.support.processes import coreplane_env, free_port, spawn, stop
from tests.support.realtime import mint, redis_url, rt_serve
from tests.support.results import Result
from tests.support.serve import ControlPlane, migrate
from tests.support.services import require
from tests.support.timing import until

ROOT = Path(__file__).resolve().parent.parent
MEMBERS = int(os.environ.get("BENCH_RT_MEMBERS", 1000))
CLIENT_PROCS = int(os.environ.get("BENCH_RT_CLIENT_PROCS", 2))
BLOCKS = int(os.environ.get("BENCH_RT_BLOCKS", 4))
PER_BLOCK = int(os.environ.get("BENCH_RT_PER_BLOCK", 20))
GAP_S = 0.1
DONE_TIMEOUT_S = 5.0
WARM_TIMEOUT_S = 120.0  # the first messages queue behind the members' join events
CONNECTIONS = int(os.environ.get("BENCH_RT_CONNECTIONS", 10_000))
CAPACITY_PROCS = 4
ROOM_SIZE = 10
RESUME_CYCLES = int(os.environ.get("BENCH_RT_RESUME_CYCLES", 100))
RESUME_RATE = 40.0  # messages a second, under the publisher's own rate limit (50/s)
APPENDS = int(os.environ.get("BENCH_RT_APPENDS", 2000))
# Connections one client process opens at once (a burst of handshakes, not a flood).
OPEN_AT_ONCE = 40
READY_TIMEOUT_S = 300.0
HEARTBEAT: dict[str, Any] = {"realtime__heartbeat_s": "300", "log_level": "warning"}
P99_GOAL_MS, RATIO_GOAL = 50.0, 1.0
PAD = "x" * 200


# servers


@contextmanager
def bare_server(layer_url: str) -> Iterator[str]:
    """The bare Channels consumer under uvicorn on ``layer_url``; its ws:// base URL."""
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="coreplane-bare-")) / "uvicorn.log"
    env = {**os.environ, "BARE_LAYER_URL": layer_url, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "uvicorn", "tests.support.realtime_bare:app",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    process = spawn(argv, log, env)
    try:
        until("the bare consumer to listen", lambda: _listens(port) or process.poll() is not None, 30)
        if process.poll() is not None:
            raise RuntimeError(f"the bare consumer did not start:\n{log.read_text()[-2000:]}")
        yield f"ws://127.0.0.1:{port}/"
    finally:
        stop(process)


def _listens(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_on(port: int) -> int:
    """The process listening on ``port`` (serving() keeps its Popen to itself)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return conn.pid
    raise RuntimeError(f"nothing listens on port {port}")


def _rss(pid: int, samples: int = 5) -> float:
    """Median RSS in bytes over a second (one reading can land mid-allocation)."""
    found = []
    for _ in range(samples):
        found.append(psutil.Process(pid).memory_info().rss)
        time.sleep(0.2)
    return statistics.median(found)


def _ws_base(cp: ControlPlane) -> str:
    return cp.url.replace("http://", "ws://") + "/ws/rt"


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# client processes


@dataclass(frozen=True)
class Plan:
    """Connections one client process opens to one server: ours with ``token`` (then a
    subscribe frame per connection), the bare consumer without (``?room=`` joins)."""

    side: str
    url: str
    rooms: tuple[str, ...]  # one per connection
    token: str | None = None
    source: str = "127.0.0.1"  # loopback address to connect from (ephemeral ports per address)


@dataclass
class Tally:
    """What one client process's members of a side got: members per message id; notes the
    time the last of them got one."""

    side: str
    reports: Any
    expected: int = 0
    got: Counter[int] = field(default_factory=Counter)
    closed: Counter[int] = field(default_factory=Counter)  # close codes before we closed

    def lost(self, code: int) -> None:
        """A member the server closed: later messages are done without it (and count as
        drops in the final tally), so one lost member does not stall every message."""
        self.closed[code] += 1
        self.expected -= 1

    def seen(self, n: int) -> None:
        self.got[n] += 1
        if self.got[n] == self.expected:
            self.reports.put(("done", self.side, n, time.perf_counter()))


async def _read(ws: Any, tally: Tally, subscribed: asyncio.Future | None) -> None:
    try:
        async for raw in ws:
            if '"n":' in raw:  # a bench message; presence events and replies are not
                frame = json.loads(raw)
                tally.seen((frame["data"] if frame.get("type") == "message" else frame)["n"])
            elif subscribed is not None and not subscribed.done():
                if '"subscribed"' in raw:
                    subscribed.set_result(None)
                elif '"error"' in raw:
                    subscribed.set_exception(RuntimeError(raw))
    except ConnectionClosed:
        pass
    if subscribed is not None and not subscribed.done():
        subscribed.set_exception(RuntimeError(f"closed before subscribed: {ws.close_code}"))
        return  # never counted in ``expected``
    tally.lost(ws.close_code or 0)


async def _open(plan: Plan, room: str, tally: Tally) -> tuple[Any, asyncio.Task]:
    query = f"?token={plan.token}" if plan.token else f"?room={room}"
    ws = await websockets.connect(
        plan.url + query, max_size=None, compression=None, ping_interval=None,
        open_timeout=120, close_timeout=5, local_addr=(plan.source, 0),
    )  # fmt: skip
    subscribed = asyncio.get_running_loop().create_future() if plan.token else None
    reader = asyncio.create_task(_read(ws, tally, subscribed))
    if subscribed is not None:
        await ws.send(json.dumps({"type": "subscribe", "room": room, "id": 1}))
        await asyncio.wait_for(subscribed, 120)
    return ws, reader


async def _open_plan(plan: Plan, tally: Tally, failed: Counter[str]) -> list[tuple[Any, asyncio.Task]]:
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def one(room: str) -> tuple[Any, asyncio.Task] | None:
        async with gate:
            try:
                return await _open(plan, room, tally)
            except Exception as exc:  # noqa: BLE001 - counted and reported, the rest go on
                failed[type(exc).__name__] += 1
                return None

    opened = [c for c in await asyncio.gather(*(one(r) for r in plan.rooms)) if c is not None]
    tally.expected += len(opened)
    return opened


async def _hold(plans: list[Plan], commands: Any, reports: Any) -> None:
    tallies = {plan.side: Tally(plan.side, reports) for plan in plans}
    held: list[tuple[Any, asyncio.Task]] = []
    failed: Counter[str] = Counter()
    for plan in plans:
        held += await _open_plan(plan, tallies[plan.side], failed)
    reports.put(("ready", {s: t.expected for s, t in tallies.items()}, dict(failed)))
    while (command := await asyncio.to_thread(commands.get)) != "close":
        if command == "tally":
            reports.put(("tally", {s: (dict(t.got), dict(t.closed)) for s, t in tallies.items()}))
    gate = asyncio.Semaphore(200)

    async def close(ws: Any, reader: asyncio.Task) -> None:
        async with gate:
            reader.cancel()
            await ws.close()

    await asyncio.gather(*(close(ws, reader) for ws, reader in held), return_exceptions=True)
    reports.put(("closed",))


def _client_process(plans: list[Plan], commands: Any, reports: Any) -> None:
    _raise_nofile()
    asyncio.run(_hold(plans, commands, reports))


class Clients:
    """Client processes, each holding the connections of its plans until closed."""

    def __init__(self, plans: list[list[Plan]]) -> None:
        ctx = mp.get_context("spawn")
        self.reports = ctx.Queue()
        self.commands = [ctx.Queue() for _ in plans]
        self.processes = [
            ctx.Process(target=_client_process, args=(p, q, self.reports), daemon=True)
            for p, q in zip(plans, self.commands, strict=True)
        ]
        for process in self.processes:
            process.start()

    def _take(self, kind: str, timeout_s: float) -> list[tuple]:
        """One ``kind`` report from every process (other reports met meanwhile are dropped)."""
        found: list[tuple] = []
        deadline = time.monotonic() + timeout_s
        while len(found) < len(self.processes):
            try:
                report = self.reports.get(timeout=max(0.01, deadline - time.monotonic()))
            except Empty:
                raise TimeoutError(f"waited {timeout_s:g} s for the client processes' {kind!r}") from None
            if report[0] == kind:
                found.append(report)
        return found

    def ready(self) -> tuple[Counter[str], Counter[str]]:
        """Connections held per side, failures to open by error."""
        held: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for _, counts, errors in self._take("ready", READY_TIMEOUT_S):
            held.update(counts)
            failed.update(errors)
        return held, failed

    def tally(self) -> dict[str, tuple[Counter[int], Counter[int]]]:
        """Per side: members that got each message id, and close codes seen before closing."""
        for queue in self.commands:
            queue.put("tally")
        found: dict[str, tuple[Counter[int], Counter[int]]] = {}
        for _, sides in self._take("tally", 60):
            for side, (got, closed) in sides.items():
                counts = found.setdefault(side, (Counter(), Counter()))
                counts[0].update(got)
                counts[1].update(closed)
        return found

    def close(self) -> None:
        for queue in self.commands:
            queue.put("close")
        try:
            self._take("closed", 60)
        finally:
            for process in self.processes:
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()


@contextmanager
def clients(plans: list[list[Plan]]) -> Iterator[Clients]:
    pool = Clients(plans)
    try:
        yield pool
    finally:
        pool.close()


def _split(rooms: list[str], parts: int) -> list[tuple[str, ...]]:
    return [tuple(rooms[i::parts]) for i in range(parts)]


# ws_broadcast_p99_ms


@dataclass
class Broadcast:
    latencies_ms: list[float] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    late: int = 0  # not everywhere within DONE_TIMEOUT_S
    drops: int = 0  # some member never got it
    members: int = 0
    closed: int = 0  # members the server closed


_DRAINS: set[asyncio.Task] = set()  # the publishers' readers (a task nobody holds may be collected)


async def _publisher(
    url: str, make: Callable[[int, float], str]
) -> tuple[Any, Callable[[int], Awaitable[float]]]:
    """A sending socket whose frames are read and dropped; ``send(n)`` returns its send time."""
    ws = await websockets.connect(url, max_size=None, compression=None, ping_interval=None)

    async def drain() -> None:
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass

    _DRAINS.add(asyncio.create_task(drain()))

    async def send(n: int) -> float:
        sent = time.perf_counter()
        await ws.send(make(n, sent))
        return sent

    return ws, send


async def _one(pool: Clients, send: Callable[[int], Awaitable[float]], side: str, n: int,
               timeout_s: float = DONE_TIMEOUT_S) -> float | None:  # fmt: skip
    """ms until every client process saw message ``n`` reach all its members; None past the timeout."""
    sent = await send(n)
    seen: list[float] = []
    deadline = time.monotonic() + timeout_s
    while len(seen) < len(pool.processes):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            report = await asyncio.to_thread(pool.reports.get, True, left)
        except Empty:
            return None
        if report[0] == "done" and report[1] == side and report[2] == n:
            seen.append(report[3])
    return (max(seen) - sent) * 1000


async def _blocks(pool: Clients, sends: dict[str, Callable[[int], Awaitable[float]]]) -> dict[str, Broadcast]:
    found = {side: Broadcast() for side in sends}
    n = 0
    for side, send in sends.items():  # warm-up: the last one through means the join storm is read too
        for _ in range(3):
            n += 1
            if await _one(pool, send, side, n, WARM_TIMEOUT_S) is None:
                print(f"bench: rt broadcast {side}: a warm-up message did not reach everyone", flush=True)
    for block in range(BLOCKS):
        order = list(sends) if block % 2 == 0 else list(sends)[::-1]
        for side in order:
            for _ in range(PER_BLOCK):
                n += 1
                found[side].sent.append(n)
                took = await _one(pool, sends[side], side, n)
                if took is None:
                    found[side].late += 1
                else:
                    found[side].latencies_ms.append(took)
                await asyncio.sleep(GAP_S)  # pacing between messages, not a wait for something
    return found


async def _broadcast_run(pool: Clients, cp: ControlPlane, token: str, bare_url: str,
                         rooms: dict[str, str]) -> dict[str, Broadcast]:  # fmt: skip
    ours_ws, ours_send = await _publisher(
        f"{_ws_base(cp)}?token={token}",
        lambda n, s: json.dumps(
            {"type": "publish", "room": rooms["coreplane"], "id": n, "data": {"n": n, "s": s}}
        ),
    )
    await ours_ws.send(json.dumps({"type": "subscribe", "room": rooms["coreplane"], "id": 0}))
    bare_ws, bare_send = await _publisher(
        f"{bare_url}?room={rooms['bare']}", lambda n, s: json.dumps({"n": n, "s": s})
    )
    try:
        return await _blocks(pool, {"coreplane": ours_send, "bare": bare_send})
    finally:
        for ws in (ours_ws, bare_ws):
            await ws.close()


def broadcast(settings: Settings) -> dict[str, Broadcast]:
    layer = redis_url()
    rooms = {
        "coreplane": f"bench-bcast.{uuid.uuid4().hex[:10]}",
        "bare": f"bench-bcast.{uuid.uuid4().hex[:10]}",
    }
    with rt_serve(**HEARTBEAT) as cp, bare_server(layer) as bare_url:
        token = mint(cp, "bench", ["bench-*"], ttl_s=3600)
        plans = [
            [Plan("coreplane", _ws_base(cp), rooms_part, token),
             Plan("bare", bare_url, tuple(rooms["bare"] for _ in rooms_part))]
            for rooms_part in _split([rooms["coreplane"]] * MEMBERS, CLIENT_PROCS)
        ]  # fmt: skip
        with clients(plans) as pool:
            held, failed = pool.ready()
            print(f"bench: rt broadcast members {dict(held)}, failed to open {dict(failed)}", flush=True)
            found = asyncio.run(_broadcast_run(pool, cp, token, bare_url, rooms))
            for side, (got, closed) in pool.tally().items():
                found[side].members = held[side]
                found[side].drops = sum(1 for n in found[side].sent if got.get(n, 0) < held[side])
                found[side].closed = sum(closed.values())
    return found


# ws_connections_per_gb


@dataclass
class Capacity:
    held: int
    failed: dict[str, int]
    baseline_mb: float
    growth_mb: float
    closed: int

    @property
    def per_gb(self) -> float:
        return self.held / (self.growth_mb / 1024) if self.growth_mb > 0 else float("inf")


def _capacity_plans(side: str, url: str, token: str | None, prefix: str, count: int,
                    procs: int) -> list[list[Plan]]:  # fmt: skip
    rooms = [f"{prefix}.{i // ROOM_SIZE}" for i in range(count)]
    return [[Plan(side, url, part, token, f"127.0.0.{2 + k}")] for k, part in enumerate(_split(rooms, procs))]


def _hold_idle(side: str, url: str, token: str | None, pid: int) -> Capacity:
    prefix = f"bench-idle.{uuid.uuid4().hex[:8]}"
    with clients(_capacity_plans(side, url, token, prefix + "w", 200, 1)) as warm:
        warm.ready()  # a warm-up round: what the first connections load stays in the baseline
    baseline = _rss(pid)
    started = time.monotonic()
    with clients(_capacity_plans(side, url, token, prefix, CONNECTIONS, CAPACITY_PROCS)) as pool:
        held, failed = pool.ready()
        opened_s = time.monotonic() - started
        loaded = _rss(pid)
        closed = sum(sum(c.values()) for _, c in pool.tally().values())
    print(f"bench: rt idle {side}: {held[side]} held (opened in {opened_s:.1f} s), failed {dict(failed)}, "
          f"RSS {baseline / 2**20:.1f} -> {loaded / 2**20:.1f} MB", flush=True)  # fmt: skip
    return Capacity(held[side], dict(failed), baseline / 2**20, (loaded - baseline) / 2**20, closed)


def capacity(settings: Settings) -> dict[str, Capacity]:
    found = {}
    with rt_serve(**HEARTBEAT) as cp:
        token = mint(cp, "bench", ["bench-*"], ttl_s=3600)
        found["coreplane"] = _hold_idle(
            "coreplane", _ws_base(cp), token, _pid_on(int(cp.url.rsplit(":", 1)[1]))
        )
    with bare_server(redis_url()) as bare_url:
        found["bare"] = _hold_idle(
            "bare", bare_url, None, _pid_on(int(bare_url.rsplit(":", 1)[1].strip("/")))
        )
    return found


# ws_resume_gap


@dataclass
class Resume:
    cycles: int = 0
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    published: int = 0
    last: int = 0

    def check(self, seq: int) -> None:
        self.received += 1
        if seq <= self.last:
            self.duplicated += 1
            return
        self.lost += seq - self.last - 1
        self.last = seq


class Publisher:
    """Publishes to ``room`` at RESUME_RATE until stopped; ``top`` is the last sequence acknowledged."""

    def __init__(self) -> None:
        self.top = self.acked = 0
        self.stopped = False

    async def run(self, url: str, room: str) -> None:
        async with websockets.connect(url, compression=None, ping_interval=None) as ws:
            reader = asyncio.create_task(self._acks(ws))
            started, n = time.perf_counter(), 0
            while not self.stopped:
                n += 1
                await ws.send(json.dumps({"type": "publish", "room": room, "id": n, "data": {"k": n}}))
                await asyncio.sleep(max(0.0, started + n / RESUME_RATE - time.perf_counter()))  # pacing
            await until_async("the last publish to be acknowledged", lambda: self.acked >= n, 30)
            reader.cancel()

    async def _acks(self, ws: Any) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") == "published":
                self.acked += 1
                self.top = max(self.top, frame["seq"])
            elif frame.get("type") == "error":
                raise RuntimeError(f"the publisher was refused: {raw}")


async def until_async(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    """tests.support.timing.until for a coroutine that must not block its loop."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout_s:g} s for {what}")
        await asyncio.sleep(0.01)


async def _session(url: str, room: str, tally: Resume, since: int | None, upto: int) -> None:
    """Subscribe (with ``since``), check every message up to sequence ``upto``, disconnect."""
    async with websockets.connect(url, compression=None, ping_interval=None) as ws:
        frame = {"type": "subscribe", "room": room, "id": 1} | ({} if since is None else {"since": since})
        await ws.send(json.dumps(frame))
        while tally.last < upto:
            got = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if got.get("type") == "subscribed" and since is None:
                tally.last = got["seq"]
            elif got.get("type") == "message":
                tally.check(got["seq"])
            elif got.get("type") == "error":
                raise RuntimeError(f"refused: {got}")


async def _resume_run(urls: list[str], publish_url: str, room: str) -> Resume:
    tally = Resume()
    publisher = Publisher()
    publishing = asyncio.create_task(publisher.run(publish_url, room))
    await until_async("the first publishes", lambda: publisher.top >= 3 or publishing.done(), 30)
    since: int | None = None
    for cycle in range(RESUME_CYCLES):
        if publishing.done():
            publishing.result()  # its error, if it stopped
        # Stay until two messages past what was published when we came back: the seam and live.
        await _session(urls[cycle % len(urls)], room, tally, since, publisher.top + 2)
        since = tally.last
        tally.cycles += 1
        mark = publisher.top
        await until_async("messages published while away", lambda: publisher.top >= mark + 3, 30)  # noqa: B023
    publisher.stopped = True
    await publishing
    tally.published = publisher.top
    await _session(urls[0], room, tally, since, publisher.top)  # the rest, then compare
    return tally


def resume(settings: Settings) -> Resume:
    scratch = Path(tempfile.mkdtemp(prefix="coreplane-rt-bench-"))
    store = f"sqlite:///{scratch}/store.db"
    migrate(coreplane_env(database_url=store))
    room = f"bench-resume.{uuid.uuid4().hex[:10]}"
    with rt_serve(store, **HEARTBEAT) as a, rt_serve(store, **HEARTBEAT) as b:
        token = mint(a, "bench", ["bench-*"], ttl_s=3600)
        urls = [f"{_ws_base(cp)}?token={token}" for cp in (a, b)]
        return asyncio.run(_resume_run(urls, urls[0], room))


# rt_history_append_*: the stream vs a table

_TABLE = """
CREATE TABLE {log} (room TEXT NOT NULL, seq BIGINT NOT NULL, data TEXT NOT NULL, sender TEXT,
                    ts DOUBLE PRECISION NOT NULL, PRIMARY KEY (room, seq));
CREATE TABLE {seqs} (room TEXT PRIMARY KEY, seq BIGINT NOT NULL)
"""
# The room's next sequence and the row in one statement: one transaction, committed at once
# (autocommit), as the Lua script is one step for Redis.
_APPEND_ROW = """
WITH s AS (INSERT INTO {seqs} (room, seq) VALUES (%(room)s, 1)
           ON CONFLICT (room) DO UPDATE SET seq = {seqs}.seq + 1 RETURNING seq)
INSERT INTO {log} (room, seq, data, sender, ts) SELECT %(room)s, s.seq, %(data)s, %(sender)s, %(ts)s FROM s
RETURNING seq
"""


async def _timed(append: Callable[[], Awaitable[int]], count: int, into: list[float]) -> int:
    last = 0
    for _ in range(count):
        started = time.perf_counter()
        seq = await append()
        into.append((time.perf_counter() - started) * 1000)
        if seq != last + 1 and last:
            raise RuntimeError(f"sequence {seq} after {last}")
        last = seq
    return last


async def _history_run(redis: str, pg_url: str) -> dict[str, list[float]]:
    import psycopg

    from controlplane.realtime.rooms import RedisRooms

    suffix = uuid.uuid4().hex[:10]
    names = {"log": f"bench_rt_log_{suffix}", "seqs": f"bench_rt_seq_{suffix}"}
    rooms = RedisRooms(redis, history_count=1000, history_age_s=600, prefix=f"coreplane:rtbench:{suffix}")
    data = json.dumps({"text": PAD})
    pg = await psycopg.AsyncConnection.connect(pg_url.replace("+psycopg", ""), autocommit=True)
    sql = _APPEND_ROW.format(**names)

    async def stream() -> int:
        return await rooms.append("bench", data, "bench", time.time())

    async def table() -> int:
        cur = await pg.execute(sql, {"room": "bench", "data": data, "sender": "bench", "ts": time.time()})
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    found: dict[str, list[float]] = {"stream": [], "table": []}
    try:
        for statement in _TABLE.format(**names).split(";"):
            await pg.execute(statement)
        for append in (stream, table):  # warm-up, not counted
            await _timed(append, 50, [])
        per_block = max(1, APPENDS // BLOCKS)
        for block in range(BLOCKS):
            order = [("stream", stream), ("table", table)]
            for label, append in order if block % 2 == 0 else order[::-1]:
                await _timed(append, per_block, found[label])
    finally:
        await pg.execute(f"DROP TABLE IF EXISTS {names['log']}, {names['seqs']}")
        await pg.close()
        client = rooms._redis()
        await client.delete(f"coreplane:rtbench:{suffix}:seq:bench", f"coreplane:rtbench:{suffix}:log:bench",
                            f"coreplane:rtbench:{suffix}:rooms")  # fmt: skip
        await rooms.close()
    return found


def history_store(settings: Settings) -> dict[str, list[float]]:
    require(settings.postgres.url, "postgres")
    assert settings.postgres.url is not None
    return asyncio.run(_history_run(redis_url(), settings.postgres.url))


# results


def broadcast_results(found: dict[str, Broadcast]) -> list[Result]:
    ours, bare = found["coreplane"], found["bare"]
    p99, bare_p99 = quantile(ours.latencies_ms, 99), quantile(bare.latencies_ms, 99)
    drops_ok = ours.drops == 0 or ours.drops < bare.drops
    full = ours.members == MEMBERS and bare.members == MEMBERS
    return [
        Result(
            name="ws_broadcast_p99_ms", ours=round(p99, 2), baseline=round(bare_p99, 2),
            unit=f"ms p99 publish -> the last of {MEMBERS:,} members got it (both publishers members too), "
                 f"{len(ours.sent)} messages per side in {BLOCKS} alternating blocks, the next sent once the last "
                 f"was everywhere; p50 coreplane {quantile(ours.latencies_ms, 50):.1f} vs bare Channels group_send "
                 f"{quantile(bare.latencies_ms, 50):.1f}; not everywhere within {DONE_TIMEOUT_S:g} s: {ours.late} vs "
                 f"{bare.late}; {CLIENT_PROCS} client processes, one Redis layer",
            goal=f"p99 < {P99_GOAL_MS:g} ms and ratio <= {RATIO_GOAL:g}, 0 drops where the bare layer drops",
            met=p99 < P99_GOAL_MS and p99 / bare_p99 <= RATIO_GOAL and drops_ok and full,
        ),
        Result(
            name="ws_broadcast_drops", ours=float(ours.drops), baseline=float(bare.drops),
            unit=f"messages (of {len(ours.sent)} per side) some member never got; members held: coreplane "
                 f"{ours.members:,}, bare {bare.members:,} of {MEMBERS:,}; members the server closed: coreplane "
                 f"{ours.closed}, bare {bare.closed}",
            goal="0 (and never more than the bare layer)", met=ours.drops == 0,
        ),
    ]  # fmt: skip


def capacity_result(found: dict[str, Capacity]) -> Result:
    ours, bare = found["coreplane"], found["bare"]
    held_all = ours.held == CONNECTIONS and bare.held == CONNECTIONS
    return Result(
        name="ws_connections_per_gb", ours=round(ours.per_gb), baseline=round(bare.per_gb),
        unit=f"idle connections per GB of server RSS growth, {CONNECTIONS:,} opened (held: coreplane {ours.held:,}, "
             f"bare {bare.held:,}); coreplane authenticated by token and subscribed, rooms of {ROOM_SIZE}: "
             f"+{ours.growth_mb:.0f} MB over {ours.baseline_mb:.0f} MB ({ours.growth_mb * 1024 / max(1, ours.held):.1f}"
             f" KB each) vs the bare consumer +{bare.growth_mb:.0f} MB over {bare.baseline_mb:.0f} MB "
             f"({bare.growth_mb * 1024 / max(1, bare.held):.1f} KB each)",
        goal="higher is better: report (ratio = ours / bare)", met=None if held_all else False,
    )  # fmt: skip


def resume_result(found: Resume) -> Result:
    return Result(
        name="ws_resume_gap", ours=float(found.lost + found.duplicated), baseline=None,
        unit=f"messages lost + duplicated over {found.cycles} reconnect-with-since cycles alternating between 2 "
             f"servers on one Redis, a publisher at {RESUME_RATE:g}/s meanwhile: {found.lost} lost, "
             f"{found.duplicated} duplicated, {found.received:,} received of {found.published:,} published",
        goal="0", met=found.lost + found.duplicated == 0 and found.cycles == RESUME_CYCLES,
    )  # fmt: skip


def history_results(found: dict[str, list[float]]) -> list[Result]:
    stream, table = found["stream"], found["table"]
    rate = {k: len(v) / (sum(v) / 1000) for k, v in found.items()}
    detail = (f"{len(stream):,} appends per side one at a time in {BLOCKS} alternating blocks; p50 stream "
              f"{quantile(stream, 50):.3f} vs table {quantile(table, 50):.3f} ms")  # fmt: skip
    return [
        Result(
            name="rt_history_append_p99_ms", ours=round(quantile(stream, 99), 3), baseline=round(quantile(table, 99), 3),
            unit=f"ms p99 per room-history append: Redis stream (INCR + XADD MAXLEN, Lua) vs a PostgreSQL table "
                 f"(upsert sequence + INSERT, one commit per message); {detail}",
            goal="report (the choice: docs/decisions/0009)", met=None,
        ),
        Result(
            name="rt_history_append_msgs_per_s", ours=round(rate["stream"]), baseline=round(rate["table"]),
            unit=f"appends/s, one room, one writer: Redis stream vs PostgreSQL table; {detail}",
            goal="report (the choice: docs/decisions/0009)", met=None,
        ),
    ]  # fmt: skip


def run(settings: Settings) -> list[Result]:
    _raise_nofile()
    results: list[Result] = []
    history = history_store(settings)
    print(f"bench: rt history stream p50 {quantile(history['stream'], 50):.3f} p99 {quantile(history['stream'], 99):.3f} ms, "
          f"table p50 {quantile(history['table'], 50):.3f} p99 {quantile(history['table'], 99):.3f} ms", flush=True)  # fmt: skip
    results += history_results(history)
    gap = resume(settings)
    print(f"bench: rt resume {gap}", flush=True)
    results.append(resume_result(gap))
    sent = broadcast(settings)
    for side, b in sent.items():
        print(f"bench: rt broadcast {side} p50 {quantile(b.latencies_ms, 50):.1f} p99 {quantile(b.latencies_ms, 99):.1f} "
              f"slowest {sorted(round(x) for x in b.latencies_ms)[-5:]} ms, late {b.late}, drops {b.drops}, closed {b.closed}", flush=True)  # fmt: skip
    results += broadcast_results(sent)
    results.append(capacity_result(capacity(settings)))
    return results
