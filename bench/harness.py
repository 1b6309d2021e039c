"""What benchmarks share: a fresh, migrated PostgreSQL schema and a real control plane."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import sqlalchemy as sa
import yaml

from controlplane.settings import Settings
from controlplane.store import partitions
from controlplane.store.db import make_engine
from controlplane.store.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def fresh_schema(settings: Settings) -> Iterator[str]:
    """A migrated store in a new PostgreSQL schema; dropped afterwards."""
    if not settings.postgres.url:
        raise SystemExit("COREPLANE_POSTGRES__URL is unset: run scripts/services.sh up postgres")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(settings.postgres.url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = f"{settings.postgres.url}?options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
        partitions.forget_known()


READY_TIMEOUT_S = 30.0


def build_rollups(conn) -> None:  # type: ignore[no-untyped-def]
    """The roll-ups incremental ingest would have left, built from the raw points already
    loaded (one pass per table), then ANALYZE. ``conn``: an autocommit psycopg connection."""
    for table, unit in (("metric_rollups_1m", "minute"), ("metric_rollups_1h", "hour")):
        conn.execute(
            f"""
            INSERT INTO {table} (metric_type, service_name, series_key, bucket, tags, count, sum, min, max)
            SELECT metric_type, service_name, md5(tags::text), date_trunc('{unit}', "timestamp"), tags,
                   count(*), sum(value), min(value), max(value)
            FROM infrastructure_metrics GROUP BY 1, 2, 3, 4, 5
            """
        )
    conn.execute("ANALYZE")


def until(what: str, check, timeout_s: float = 20.0, every_s: float = 0.05, logs=lambda: ""):  # type: ignore[no-untyped-def]
    """Poll ``check`` until it returns something truthy and return that; past ``timeout_s``
    raise TimeoutError naming ``what`` (with ``logs()``, for a process's log tail)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not within {timeout_s:g} s\n{logs()}")


def epoch(stamp: str) -> float:
    """An API timestamp (RFC 3339, Z or offset) as Unix time."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A process whose output goes to ``log`` (a pipe nobody reads would fill and stall it)."""
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until ``url`` answers 200; the log's tail in the error if the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not become ready:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _coreplane() -> str:
    return str(Path(sys.executable).parent / "coreplane")


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
    return env | {f"COREPLANE_{k.upper()}": v for k, v in values.items()}


@contextmanager
def migrated_store(dialect: str, root: Path, settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The URL of an empty, migrated store: a SQLite file in ``root``, or a fresh schema on
    ``settings``' PostgreSQL (dropped afterwards)."""
    if dialect == "sqlite":
        url = f"sqlite:///{root}/store.db"
        upgrade(url)
        yield url
        return
    with fresh_schema(settings) as url:
        yield url


@contextmanager
def running_control_plane(
    database_url: str, workers: int = 1, log: Path | None = None, **settings: str
) -> Iterator[tuple[str, str]]:
    """`coreplane serve` on a free port against a migrated ``database_url``, with extra
    ``settings`` as COREPLANE_* variables (``webhooks__alertmanager_token=...``):
    (base URL, admin token)."""
    port, token = free_port(), secrets.token_urlsafe(32)
    env = _env(database_url=database_url, admin_token=token, server__port=str(port), log_level="warning",
               server__workers=str(workers), **settings)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="coreplane-serve-") as scratch:
        log = log or Path(scratch) / "serve.log"
        process = spawn([_coreplane(), "serve"], log, env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{base}/readyz", process, log)
            yield base, token
        finally:
            stop(process)


def spawn_agent(base: str, token: str, name: str, targets: list[dict], work: Path) -> subprocess.Popen:
    """`coreplane agent` reporting to ``base`` with ``targets`` (agent.yaml entries)."""
    config = {"name": name, "control_plane_url": base, "token_file": str(work / "token.json"),
              "spool_dir": str(work / "spool"), "heartbeat_interval_s": 1, "targets": targets}  # fmt: skip
    (work / "agent.yaml").write_text(yaml.safe_dump(config))
    env = _env(admin_token=token, log_level="warning")
    return subprocess.Popen([_coreplane(), "agent", "--config", str(work / "agent.yaml")], env=env, cwd=work)
