"""A control plane of its own for each test here: rules, catalog and actions start empty."""

from __future__ import annotations

import os
import secrets

import pytest
from dotenv import dotenv_values

from tests.conftest import SERVICES_ENV, free_port, migrate, start_serve


@pytest.fixture
def control_plane_sqlite(tmp_path, services):
    """(URL, admin token, log path) of a fresh `coreplane serve` on SQLite, with the real services' addresses."""
    port, token = free_port(), secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
    env |= {k: v for k, v in dotenv_values(SERVICES_ENV).items() if v is not None}
    env |= {
        "COREPLANE_DATABASE_URL": f"sqlite:///{tmp_path}/store.db",
        "COREPLANE_ADMIN_TOKEN": token,
        "COREPLANE_SERVER__PORT": str(port),
    }
    migrate(env)
    proc = start_serve(env, tmp_path / "serve.log")
    yield f"http://127.0.0.1:{port}", token, tmp_path / "serve.log"
    proc.terminate()
    proc.wait(timeout=15)
