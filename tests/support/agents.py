"""Real agents (in this process, or a spawned `coreplane agent`) and a real Celery worker."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path

import yaml

from controlplane.settings import Settings
from tests.support.processes import coreplane_bin, coreplane_env
from tests.support.timing import until


@contextmanager
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


def spawn_agent(base: str, token: str, name: str, targets: list[dict], work: Path) -> subprocess.Popen:
    """`coreplane agent` reporting to ``base`` with ``targets`` (agent.yaml entries)."""
    config = {"name": name, "control_plane_url": base, "token_file": str(work / "token.json"),
              "spool_dir": str(work / "spool"), "heartbeat_interval_s": 1, "targets": targets}  # fmt: skip
    (work / "agent.yaml").write_text(yaml.safe_dump(config))
    env = coreplane_env(admin_token=token, log_level="warning")
    return subprocess.Popen(
        [coreplane_bin(), "agent", "--config", str(work / "agent.yaml")], env=env, cwd=work
    )


@contextmanager
def running_worker(services: Settings, env: dict[str, str], *args: str, name: str | None = None):  # type: ignore[no-untyped-def]
    """A real `coreplane worker --concurrency=1 ARGS`, answering pings; yields the Celery app."""
    from controlplane.tasks import make_celery

    proc = subprocess.Popen(
        [coreplane_bin(), "worker", "--concurrency=1", *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    celery = make_celery(services)

    def pinged() -> list:
        assert proc.poll() is None, "the Celery worker exited before answering a ping"
        return celery.control.ping(timeout=1, destination=[name] if name else None)

    until("the Celery worker to answer a ping", pinged, timeout_s=60, every_s=0)
    try:
        yield celery
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
