"""A private Redis primary + replicas (+ Sentinels) on loopback, for failover benchmarks and tests."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.processes import free_port, spawn
from tests.support.timing import until

READY_TIMEOUT_S = 10.0
POLL_S = 0.01

# Every node gets these; the port and dir lines are added per node.
NODE_CONFIG = """\
bind 127.0.0.1
save ""
appendonly no
protected-mode no
replica-announce-ip 127.0.0.1
repl-diskless-sync yes
repl-diskless-sync-delay 0
"""


def _client(port: int, timeout_s: float = 0.2) -> redis.Redis:
    # No retries: callers poll on their own clock, and redis-py's default backoff would blur timings.
    return redis.Redis(
        "127.0.0.1",
        port,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


def _wait_answers(port: int, process: subprocess.Popen, log: Path) -> None:
    def answers() -> bool:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"process on port {port} exited with {process.returncode}:\n{tail}")
        with _client(port) as c:
            return bool(c.ping())

    until(
        f"Redis on port {port} to answer PING", answers, READY_TIMEOUT_S, POLL_S, ignoring=(redis.RedisError,)
    )


class RedisNode:
    """One `redis-server` on loopback with its own config file and data dir."""

    def __init__(self, port: int, dir: Path) -> None:
        self.port, self.dir = port, dir
        self.config = dir / "redis.conf"
        self.log = dir / "redis.log"
        self.process: subprocess.Popen | None = None
        dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"port {port}\ndir {dir}\n{NODE_CONFIG}")

    def __repr__(self) -> str:
        return f"RedisNode(port={self.port})"

    def start(self, replica_of: RedisNode | None = None) -> None:
        """(Re)start on the same config file, as a replica of ``replica_of`` or standalone."""
        _stop(self.process)
        # Sentinel CONFIG REWRITEs a `replicaof` line into the file after a failover; the command
        # line is applied after the file, so it decides the role.
        role = ["127.0.0.1", str(replica_of.port)] if replica_of else ["no", "one"]
        self.process = spawn(["redis-server", str(self.config), "--replicaof", *role], self.log)
        _wait_answers(self.port, self.process, self.log)

    def kill(self) -> None:
        """SIGKILL, then reap: no shutdown save, no goodbye to replicas."""
        _stop(self.process)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self) -> redis.Redis:
        """A client with short timeouts and no retries."""
        return _client(self.port)


def accepts_writes(node: RedisNode) -> bool:
    """True when the node says it is a master and a SET actually succeeds there."""
    try:
        with node.client() as c:
            return c.execute_command("ROLE")[0] == b"master" and bool(c.set("failover:probe", "1"))
    except redis.RedisError:  # down, or READONLY
        return False


class Topology:
    """A primary, its replicas and optional Sentinels; ``primary`` is the node started as primary."""

    def __init__(
        self, root: Path, replicas: int, sentinels: int, master_name: str, sentinel_settings: str
    ) -> None:
        self.root, self.master_name = root, master_name
        self.primary = RedisNode(free_port(), root / "primary")
        self.replicas = [RedisNode(free_port(), root / f"replica{i}") for i in range(replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self._sentinel_settings = sentinel_settings
        self._sentinels: list[subprocess.Popen] = []

    @property
    def nodes(self) -> list[RedisNode]:
        return [self.primary, *self.replicas]

    def current_primary(self) -> RedisNode | None:
        """The node that answers ROLE master and accepts a write, or None."""
        return next((n for n in self.nodes if n.alive() and accepts_writes(n)), None)

    def start(self) -> None:
        """Start the original shape from empty data and wait until every link is up."""
        self.primary.start()
        with self.primary.client() as c:
            c.flushall()
        for replica in self.replicas:
            replica.start(replica_of=self.primary)
        for replica in self.replicas:
            until(
                f"{replica}'s replication link",
                lambda r=replica: _linked(r, self.primary),
                READY_TIMEOUT_S,
                POLL_S,
                ignoring=(redis.RedisError,),
            )
        # Sentinels only after the links are up: they learn replicas from the primary's INFO,
        # which they refresh every 10 s, so a replica missing from the first look stays unknown.
        self._sentinels = [self._start_sentinel(i, port) for i, port in enumerate(self.sentinel_ports)]
        for port in self.sentinel_ports:
            until(
                f"sentinel {port} to see every node",
                lambda p=port: self._sentinel_sees_all(p),
                READY_TIMEOUT_S,
                POLL_S,
                ignoring=(redis.RedisError,),
            )

    def reset(self) -> None:
        """Kill whatever still runs and rebuild the original shape for the next trial."""
        self.stop()
        self.start()

    def stop(self) -> None:
        # Sentinels first, so none reconfigures a node while the nodes go down.
        for process in self._sentinels:
            _stop(process)
        self._sentinels = []
        for node in self.nodes:
            node.kill()

    def _start_sentinel(self, index: int, port: int) -> subprocess.Popen:
        # A fresh config each time: Sentinel rewrites its file with the failover it just did.
        dir = self.root / f"sentinel{index}"
        dir.mkdir(exist_ok=True)
        config = dir / "sentinel.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel resolve-hostnames no\n"
            "sentinel announce-ip 127.0.0.1\n"
            f"sentinel monitor {self.master_name} 127.0.0.1 {self.primary.port} "
            f"{len(self.sentinel_ports) // 2 + 1}\n{self._sentinel_settings}"
        )
        log = dir / "sentinel.log"
        process = spawn(["redis-sentinel", str(config)], log)
        _wait_answers(port, process, log)
        return process

    def _sentinel_sees_all(self, port: int) -> bool:
        with _client(port) as c:
            replicas = c.sentinel_slaves(self.master_name)
            sentinels = c.sentinel_sentinels(self.master_name)
        known = {r["port"] for r in replicas if not r["is_disconnected"]}
        return known == {r.port for r in self.replicas} and len(sentinels) == len(self.sentinel_ports) - 1


def _linked(replica: RedisNode, primary: RedisNode) -> bool:
    with replica.client() as c:
        info = c.info("replication")
    return info.get("master_port") == primary.port and info.get("master_link_status") == "up"


@contextmanager
def redis_topology(
    replicas: int = 2,
    sentinels: int = 0,
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 5000,
    master_name: str = "bench",
) -> Iterator[Topology]:
    """A running primary + ``replicas`` (+ ``sentinels``) in a temp dir; everything killed on exit."""
    root = Path(tempfile.mkdtemp(prefix="redis-topology-"))
    settings = (
        f"sentinel down-after-milliseconds {master_name} {down_after_ms}\n"
        f"sentinel failover-timeout {master_name} {failover_timeout_ms}\n"
        f"sentinel parallel-syncs {master_name} 1\n"
    )
    topology = Topology(root, replicas, sentinels, master_name, settings)
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()
        shutil.rmtree(root, ignore_errors=True)


def wait_for_new_primary(topology: Topology, old: RedisNode, timeout_s: float) -> tuple[RedisNode, float]:
    """Poll the surviving nodes every 10 ms until one is master and takes a write.

    Returns the node and the `time.monotonic()` at which it first took the write; raises
    TimeoutError when none did within ``timeout_s``.
    """
    survivors = [n for n in topology.nodes if n is not old and n.alive()]

    def writable() -> tuple[RedisNode, float] | None:
        for node in survivors:
            if accepts_writes(node):
                return node, time.monotonic()
        return None

    return until("a surviving node to become a writable primary", writable, timeout_s, POLL_S)
