"""Child processes: free ports, spawning with a log, readiness, stopping, their environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.services import services_env
from tests.support.timing import until

READY_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def coreplane_bin() -> str:
    """The `coreplane` script of the running interpreter's environment."""
    return str(Path(sys.executable).parent / "coreplane")


def coreplane_env(with_services: bool = False, **values: str) -> dict[str, str]:
    """This process's environment without its COREPLANE_* variables, then (``with_services``)
    services.env's, then ``values`` as COREPLANE_<NAME> (``server__port`` -> COREPLANE_SERVER__PORT)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
    if with_services:
        env |= services_env()
    return env | {f"COREPLANE_{k.upper()}": v for k, v in values.items()}


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A process whose output goes to ``log`` (a pipe nobody reads would fill and stall it)."""
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class ProcessDied(RuntimeError):
    pass


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until ``url`` answers 200; the log's tail in the error if the process dies or time runs out."""

    def ready() -> bool:
        if answers(url):
            return True
        if process.poll() is not None:
            raise ProcessDied(f"{url} did not become ready:\n{_tail(log)}")
        return False

    until(f"{url} to answer 200", ready, timeout_s, every_s=0.1, logs=lambda: _tail(log))


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
