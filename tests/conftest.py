"""Shared fixtures; the helpers they call live in tests/support."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from controlplane.settings import Settings
from tests.support.agents import running_worker
from tests.support.processes import free_port
from tests.support.serve import ControlPlane, private_serve, serving
from tests.support.services import ROOT, services_settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The folder is the marker, so `pytest -m unit` needs no services.
    for item in items:
        kind = Path(item.fspath).relative_to(ROOT / "tests").parts[0]
        if kind in {"unit", "integration", "e2e", "browser", "chaos"}:
            item.add_marker(kind)


@pytest.fixture(scope="session")
def services() -> Settings:
    """Settings pointing at the real local services (`scripts/services.sh up`)."""
    return services_settings()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory, services) -> ControlPlane:
    """The session's shared `coreplane serve` (migrated by `coreplane migrate`), configured
    with every real service and an agent identity."""
    tmp = tmp_path_factory.mktemp("cp")
    port = free_port()
    agent = {"agent__control_plane_url": f"http://127.0.0.1:{port}", "agent__name": "e2e-agent"}
    store = f"sqlite:///{tmp}/store.db"
    with serving(store, tmp / "serve.log", port=port, with_services=True, migrated=False, **agent) as found:
        yield found


@pytest.fixture
def control_plane_sqlite(tmp_path, services):
    """A private serve (``private_serve``): for tests that need the rules, catalog and
    actions empty."""
    with private_serve(tmp_path) as found:
        yield found


@pytest.fixture
def haproxy_lb(tmp_path):
    """start(servers={"s1": port, ...}, check=False) -> (admin socket, frontend port): an
    HAProxy instance from scripts/haproxy-instance.sh whose backend `app` has those servers."""
    helper = ROOT / "scripts" / "haproxy-instance.sh"
    names: list[str] = []

    def start(servers: dict[str, int], check: bool = False) -> tuple[str, int]:
        port = free_port()
        lines = [
            "defaults", "  mode http", "  timeout connect 1s", "  timeout client 5s", "  timeout server 5s",
            "frontend f", f"  bind 127.0.0.1:{port}", "  default_backend app", "backend app",
        ]  # fmt: skip
        if check:
            lines.append("  option httpchk GET /")
        lines += [
            f"  server {n} 127.0.0.1:{p}{' check inter 500ms' if check else ''}" for n, p in servers.items()
        ]
        config = tmp_path / f"lb{port}.cfg"
        config.write_text("\n".join(lines) + "\n")
        name = f"t{port}"
        done = subprocess.run(["bash", helper, "start", name, config], capture_output=True, text=True)
        assert done.returncode == 0, f"haproxy did not start: {done.stderr}"
        names.append(name)
        return done.stdout.strip(), port

    yield start
    for name in names:
        subprocess.run(["bash", helper, "stop", name], check=True)


@pytest.fixture
def celery_worker(services, control_plane):
    with running_worker(services, control_plane.env) as celery:
        yield celery
