"""Shared fixtures. Services come from var/services.env, written by scripts/services.sh."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from controlplane.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SERVICES_ENV = Path(os.environ.get("COREPLANE_VAR", ROOT / "var")) / "services.env"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The folder is the marker, so `pytest -m unit` needs no services.
    for item in items:
        kind = Path(item.fspath).relative_to(ROOT / "tests").parts[0]
        if kind in {"unit", "integration", "e2e", "browser", "chaos"}:
            item.add_marker(kind)


@pytest.fixture(scope="session")
def services() -> Settings:
    """Settings pointing at the real local services (`scripts/services.sh up`)."""
    if not SERVICES_ENV.exists():
        pytest.fail(
            f"{SERVICES_ENV} is missing: start the real services with `scripts/services.sh up` "
            "(or run `make test`, which does it)"
        )
    return load_settings(_env_file=SERVICES_ENV)


def require(settings_value: object, service: str) -> None:
    """Fail (never skip) when a service the test needs is absent from services.env."""
    if not settings_value:
        pytest.fail(f"{service} is not in {SERVICES_ENV}: run `scripts/services.sh up {service}`")


class ServiceDown(AssertionError):
    pass


def reach(service: str, address: object, call, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Call a client; a failure names the service and how to bring it back."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:
        raise ServiceDown(
            f"{service} at {address} did not answer: {type(exc).__name__}: {exc}\n"
            f"  start it with: scripts/services.sh up {service}"
        ) from exc


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_serve(env: dict[str, str], log: Path | None = None, timeout_s: float = 30):  # type: ignore[no-untyped-def]
    """`coreplane serve` with ``env`` (the store migrated already), once /readyz answers."""
    import subprocess
    import time

    import httpx

    out = log.open("a") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "coreplane"), "serve"], env=env, stdout=out, stderr=out
    )
    url = f"http://127.0.0.1:{env['COREPLANE_SERVER__PORT']}/readyz"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = log.read_text()[-3000:] if log else ""
            pytest.fail(f"coreplane serve did not become ready:\n{tail}")
        time.sleep(0.2)


def migrate(env: dict[str, str]) -> None:
    import subprocess

    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "coreplane"), "migrate"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


class ControlPlane:
    """A real `coreplane serve` process on a free port with its own SQLite store."""

    def __init__(self, url: str, token: str, env: dict[str, str], log: Path) -> None:
        self.url, self.token, self.env, self.log = url, token, env, log

    def coreplane(self, *args: str, timeout: float = 30):  # type: ignore[no-untyped-def]
        import subprocess

        return subprocess.run(
            [str(ROOT / ".venv" / "bin" / "coreplane"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory, services) -> ControlPlane:
    """`coreplane migrate` then `coreplane serve`, configured with every real service."""
    import secrets

    from dotenv import dotenv_values

    tmp = tmp_path_factory.mktemp("cp")
    port = free_port()
    token = secrets.token_urlsafe(32)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")},
        **{k: v for k, v in dotenv_values(SERVICES_ENV).items() if v is not None},
        "COREPLANE_DATABASE_URL": f"sqlite:///{tmp}/store.db",
        "COREPLANE_ADMIN_TOKEN": token,
        "COREPLANE_SERVER__PORT": str(port),
        "COREPLANE_AGENT__CONTROL_PLANE_URL": f"http://127.0.0.1:{port}",
        "COREPLANE_AGENT__NAME": "e2e-agent",
    }
    log = tmp / "serve.log"
    cp = ControlPlane(f"http://127.0.0.1:{port}", token, env, log)
    migrate(env)
    proc = start_serve(env, log)
    yield cp
    proc.terminate()
    proc.wait(timeout=15)


@contextlib.contextmanager
def private_serve(tmp_path: Path, **settings: str):  # type: ignore[no-untyped-def]
    """(URL, admin token, log path) of a fresh `coreplane serve` on its own SQLite store, with
    the real services' addresses and ``settings`` as extra COREPLANE_ variables."""
    import secrets

    from dotenv import dotenv_values

    port, token = free_port(), secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
    env |= {k: v for k, v in dotenv_values(SERVICES_ENV).items() if v is not None}
    env |= {
        "COREPLANE_DATABASE_URL": f"sqlite:///{tmp_path}/store.db",
        "COREPLANE_ADMIN_TOKEN": token,
        "COREPLANE_SERVER__PORT": str(port),
        **settings,
    }
    migrate(env)
    proc = start_serve(env, tmp_path / "serve.log")
    try:
        yield f"http://127.0.0.1:{port}", token, tmp_path / "serve.log"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


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
    import subprocess

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


def csrf_of(page: str) -> str:
    """The CSRF token of a console page's form."""
    import re

    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def console_login(url: str, **form: str):  # type: ignore[no-untyped-def]
    """(client, answer) of a console login with ``form`` (username/password or token)."""
    import httpx

    client = httpx.Client(base_url=url)
    return client, client.post("/login", data={"csrf": csrf_of(client.get("/login").text), **form})


TEST_PASSWORD = "correct horse battery staple"


def console_users(url: str, token: str, **roles: str) -> dict:
    """Logged-in console clients: "admin" (by the admin token) and one per ``name=role``,
    each user added through the Users form with TEST_PASSWORD."""
    admin, answer = console_login(url, token=token)
    assert answer.status_code == 303
    csrf = csrf_of(admin.get("/users").text)
    clients = {"admin": admin}
    for name, role in roles.items():
        form = {"csrf": csrf, "op": "add", "username": name, "password": TEST_PASSWORD, "role": role}
        added = admin.post("/users", data=form)
        assert added.status_code == 303, added.text
        clients[name], answer = console_login(url, username=name, password=TEST_PASSWORD)
        assert answer.status_code == 303
    return clients


@contextlib.contextmanager
def running_agent(url: str, token: str, tmp_path: Path, *targets, name: str = "test-agent", **options):  # type: ignore[no-untyped-def]
    """A real agent (in this process) reporting to ``url``, registered with the admin
    ``token``, watching ``targets``; stopped (and flushed) on exit."""
    from agents.config import AgentConfig
    from agents.daemon import Agent, load_or_register

    options = {"heartbeat_interval_s": 0.5, "flush_interval_s": 1} | options
    config = AgentConfig(name=name, control_plane_url=url, token_file=tmp_path / f"{name}.json",
                         spool_dir=tmp_path / f"{name}.spool", targets=list(targets), **options)  # fmt: skip
    agent = Agent(config, load_or_register(config, token))
    agent.start()
    try:
        yield agent
    finally:
        agent.interrupt()
        agent.stop()


@contextlib.contextmanager
def running_worker(services: Settings, env: dict[str, str], *args: str, name: str | None = None):  # type: ignore[no-untyped-def]
    """A real `coreplane worker --concurrency=1 ARGS`, answering pings; yields the Celery app."""
    import subprocess
    import time

    from controlplane.tasks import make_celery

    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "coreplane"), "worker", "--concurrency=1", *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    celery = make_celery(services)
    deadline = time.monotonic() + 60
    while not celery.control.ping(timeout=1, destination=[name] if name else None):
        assert proc.poll() is None and time.monotonic() < deadline, "the Celery worker did not come up"
    try:
        yield celery
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def celery_worker(services, control_plane):
    with running_worker(services, control_plane.env) as celery:
        yield celery
