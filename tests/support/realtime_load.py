"""Realtime test support for presence, recovery, slow clients and fan-out: the serve's pid
and memory, many clients at once, a room member in a process of its own, keep-alive pings,
presence and /metrics reads, and the bare Channels baseline under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import free_port, spawn, stop
from tests.support.realtime import Client
from tests.support.serve import ControlPlane
from tests.support.services import ROOT
from tests.support.timing import until

CONNECT_TIMEOUT_S = 30.0


def server_pid(cp: ControlPlane) -> int:
    """The pid of the process listening on ``cp``'s port (`coreplane serve` with one worker
    serves in the process `serving` started)."""
    port = int(cp.url.rsplit(":", 1)[1])
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return conn.pid
    raise AssertionError(f"nothing listens on {cp.url}")


def rss_bytes(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit towards ``wanted`` (up to the hard limit); the
    limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def open_clients(urls: list[str], concurrency: int = 50, **kwargs: Any) -> list[Client]:
    """One connected Client per URL, at most ``concurrency`` handshakes at a time; all of
    them or an error (the ones opened are closed then)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(url: str) -> Client:
        async with gate:
            return await asyncio.wait_for(Client.open(url, **kwargs), CONNECT_TIMEOUT_S)

    results = await asyncio.gather(*(one(u) for u in urls), return_exceptions=True)
    opened = [r for r in results if isinstance(r, Client)]
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        await close_all(opened)
        raise AssertionError(f"{len(failed)} of {len(urls)} connections failed, first: {failed[0]!r}")
    return opened


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(asyncio.wait_for(c.close(), 10) for c in clients), return_exceptions=True)


async def keep_alive(clients: list[Client], every_s: float) -> None:
    """Ping each client every ``every_s`` (a server with a short heartbeat closes a silent
    one); run it as a task and cancel it when done. The pongs wait in the clients' inboxes."""
    while True:
        for client in clients:
            # A closed client is the test's to notice, not the pinger's.
            with contextlib.suppress(Exception):
                await client.send("ping")
        await asyncio.sleep(every_s)


def off_presence(cp: ControlPlane, name: str, user: str) -> float:
    """Poll presence until ``user`` is off it; the time.monotonic() it was first seen off."""
    until(f"{user} off presence", lambda: user not in presence_users(cp, name), timeout_s=15, every_s=0.05)
    return time.monotonic()


def small_receive_buffer(url: str, size: int = 64 * 1024) -> socket.socket:
    """A TCP socket connected to ``url``'s host with a fixed receive buffer of ``size``:
    Linux would otherwise grow it to megabytes (tcp_rmem) and hide a client that stopped
    reading behind the kernel's buffers. Pass it as ``sock=`` to websockets.connect."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)  # before connect: sets the window
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return sock


def presence_users(cp: ControlPlane, room: str) -> set[str]:
    """The users ``GET /api/v1/realtime/rooms/{room}`` lists as present."""
    answer = httpx.get(
        f"{cp.url}/api/v1/realtime/rooms/{room}", headers={"Authorization": f"Bearer {cp.token}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return {m["user"] for m in answer.json()["members"]}


def publish(cp: ControlPlane, room: str, data: Any, http: httpx.Client | None = None) -> int:
    """``POST /api/v1/realtime/rooms/{room}/messages``; the sequence it got."""
    post = http.post if http is not None else httpx.post
    answer = post(
        f"{cp.url}/api/v1/realtime/rooms/{room}/messages",
        json={"data": data},
        headers={"Authorization": f"Bearer {cp.token}"},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["seq"]


class ApiPublisher:
    """Publishes through ``POST /api/v1/realtime/rooms/{room}/messages``, recording each
    message's sequence and data in ``sent``."""

    def __init__(self, cp: ControlPlane, name: str) -> None:
        self.cp, self.room = cp, name
        self.sent: dict[int, dict] = {}
        self.http = httpx.AsyncClient(headers={"Authorization": f"Bearer {cp.token}"}, timeout=30)

    async def publish(self, count: int, tag: str) -> None:
        for n in range(count):
            data = {"tag": tag, "n": n}
            answer = await self.http.post(
                f"{self.cp.url}/api/v1/realtime/rooms/{self.room}/messages", json={"data": data}
            )
            assert answer.status_code == 201, answer.text
            self.sent[answer.json()["seq"]] = data

    async def close(self) -> None:
        await self.http.aclose()


def metric(cp: ControlPlane, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` on ``cp``'s /metrics whose labels include ``labels``."""
    text = httpx.get(f"{cp.url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def seqs(frames: list[dict]) -> list[int]:
    return [f["seq"] for f in frames]


def assert_consecutive(found: list[int], first: int, what: str) -> None:
    """``found`` is exactly first, first+1, ...: no gap, no repeat, in order."""
    expected = list(range(first, first + len(found)))
    if found != expected:
        gaps = sorted(set(expected) - set(found))[:10]
        repeats = sorted({s for s in found if found.count(s) > 1})[:10]
        raise AssertionError(f"{what}: {len(found)} seqs from {first}; missing {gaps}, repeated {repeats}")


class ChildMember:
    """A room member in its own process (tests/support/realtime_member.py), to be killed or
    stopped; ``last_ping()`` is when it last pinged the server."""

    def __init__(self, url: str, room: str) -> None:
        scratch = Path(tempfile.mkdtemp(prefix="coreplane-rt-member-"))
        self.pings = scratch / "pings"
        self.pings.touch()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.realtime_member", url, room, str(self.pings)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        line = self.process.stdout.readline()
        if line.strip() != "subscribed":
            self.process.kill()
            raise AssertionError(f"the member did not subscribe: {line!r} {self.process.stderr.read()!r}")

    def last_ping(self) -> float:
        return float(self.pings.read_text().split()[-1])

    def end(self) -> None:
        """Whatever state it is in (stopped included): gone."""
        if self.process.poll() is None:
            self.process.kill()
            os.kill(self.process.pid, signal.SIGCONT)  # a stopped process takes the kill now
        self.process.wait(timeout=10)


@contextmanager
def bare_serve(layer_url: str) -> Iterator[str]:
    """tests/support/realtime_bare.py under uvicorn on ``layer_url``; its ws:// base URL."""
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="coreplane-rt-bare-")) / "uvicorn.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")} | {
        "BARE_LAYER_URL": layer_url
    }
    argv = [sys.executable, "-m", "uvicorn", "tests.support.realtime_bare:app", "--port", str(port)]
    process = spawn([*argv, "--log-level", "warning", "--ws-max-size", str(1 << 22)], log, env)
    try:
        until(
            "the bare Channels app to listen",
            lambda: _listening(port, process, log),
            timeout_s=30,
            every_s=0.1,
        )
        yield f"ws://127.0.0.1:{port}/"
    finally:
        stop(process)


def _listening(port: int, process: subprocess.Popen, log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"uvicorn for the bare app exited:\n{log.read_text()[-3000:]}")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
