"""What benchmarks share: a fresh, migrated PostgreSQL schema and a real control plane."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa

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


@contextmanager
def running_control_plane(database_url: str, workers: int = 1) -> Iterator[tuple[str, str]]:
    """`coreplane serve` on a free port against ``database_url``: (base URL, admin token)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
    env |= {
        "COREPLANE_DATABASE_URL": database_url,
        "COREPLANE_ADMIN_TOKEN": token,
        "COREPLANE_SERVER__PORT": str(port),
        "COREPLANE_LOG_LEVEL": "warning",
        "COREPLANE_SERVER__WORKERS": str(workers),
    }
    coreplane = str(Path(sys.executable).parent / "coreplane")
    proc = subprocess.Popen([coreplane, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"coreplane serve did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        yield base, token
    finally:
        proc.terminate()
        proc.wait(timeout=15)
