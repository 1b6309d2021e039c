"""A `coreplane serve` whose tasks are on a test's own broker (tests/support/tasks.py): it
captures that virtual host's task events and its console and API act on its queues."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from controlplane.settings import Settings
from tests.support.processes import free_port, stop
from tests.support.serve import ControlPlane, migrate, start_serve
from tests.support.tasks import tasks_env


@contextmanager
def tasks_serving(settings: Settings, tmp_path: Path, **extra: str) -> Iterator[ControlPlane]:
    """`coreplane serve` on a fresh SQLite store in ``tmp_path`` with ``settings``' tasks
    (and the real services), ``extra`` as COREPLANE_* variables (lower-case names)."""
    port, token = free_port(), secrets.token_urlsafe(32)
    env = tasks_env(settings, database_url=f"sqlite:///{tmp_path}/store.db", admin_token=token,
                    server__port=str(port), **extra)  # fmt: skip
    migrate(env)
    log = tmp_path / "serve.log"
    process = start_serve(env, log)
    try:
        yield ControlPlane(f"http://127.0.0.1:{port}", token, env, log)
    finally:
        stop(process)
