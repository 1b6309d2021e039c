"""A real `coreplane serve`: one factory, ``serving()``, for a server per test and for the
session's shared one, and for benchmarks."""

from __future__ import annotations

import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import coreplane_bin, coreplane_env, free_port, spawn, stop, wait_ready


@dataclass
class ControlPlane:
    """A running `coreplane serve`: its base URL, admin token, environment and log."""

    url: str
    token: str
    env: dict[str, str]
    log: Path
    pid: int | None = None  # the serve process (set by ``serving``; with workers > 1, the parent)

    def coreplane(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """`coreplane ARGS` with this server's environment."""
        return subprocess.run(
            [coreplane_bin(), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )


def migrate(env: dict[str, str]) -> None:
    """`coreplane migrate` with ``env``."""
    done = subprocess.run([coreplane_bin(), "migrate"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def start_serve(env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    """`coreplane serve` with ``env`` (the store migrated already), once /readyz answers; for
    tests that stop and restart a server themselves (stop it with processes.stop)."""
    log = log or Path(tempfile.mkdtemp(prefix="coreplane-serve-")) / "serve.log"
    process = spawn([coreplane_bin(), "serve"], log, env)
    try:
        wait_ready(f"http://127.0.0.1:{env['COREPLANE_SERVER__PORT']}/readyz", process, log)
    except BaseException:
        stop(process)
        raise
    return process


@contextmanager
def serving(database_url: str, log: Path, *, port: int | None = None, with_services: bool = False,
            migrated: bool = True, **settings: str) -> Iterator[ControlPlane]:  # fmt: skip
    """`coreplane serve` on ``port`` (default: a free one) against ``database_url``
    (``migrated=False``: run `coreplane migrate` first), with the real services' addresses
    (``with_services``) and ``settings`` as COREPLANE_* variables (``server__live_tick_s=...``).
    The session's shared server and each test's private one are both made here."""
    port, token = port or free_port(), secrets.token_urlsafe(32)
    url = f"http://127.0.0.1:{port}"
    env = coreplane_env(
        with_services, database_url=database_url, admin_token=token, server__port=str(port), **settings
    )
    control_plane = ControlPlane(url, token, env, log)
    if not migrated:
        migrate(env)
    process = start_serve(env, log)
    control_plane.pid = process.pid
    try:
        yield control_plane
    finally:
        stop(process)


@contextmanager
def running_control_plane(
    database_url: str, workers: int = 1, log: Path | None = None, **settings: str
) -> Iterator[tuple[str, str]]:
    """(base URL, admin token) of a quiet `coreplane serve` against a migrated ``database_url``,
    without the real services' addresses."""
    with tempfile.TemporaryDirectory(prefix="coreplane-serve-") as scratch:
        log = log or Path(scratch) / "serve.log"
        extra = {"log_level": "warning", "server__workers": str(workers)} | settings
        with serving(database_url, log, **extra) as found:
            yield found.url, found.token


@contextmanager
def private_serve(tmp_path: Path, **settings: str) -> Iterator[tuple[str, str, Path]]:
    """(URL, admin token, log path) of a fresh `coreplane serve` on its own SQLite store in
    ``tmp_path``, with the real services' addresses and ``settings`` (lower-case names, as
    for ``serving``)."""
    store = f"sqlite:///{tmp_path}/store.db"
    with serving(store, tmp_path / "serve.log", with_services=True, migrated=False, **settings) as found:
        yield found.url, found.token, found.log
