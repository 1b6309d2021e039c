"""`coreplane worker` and `coreplane flower` as real processes on RabbitMQ and Redis."""

import subprocess

import httpx

from tests.support.processes import free_port
from tests.support.services import ROOT, require
from tests.support.timing import until

COREPLANE = str(ROOT / ".venv" / "bin" / "coreplane")


def test_worker_runs_a_task_and_answers_its_health_check(services, control_plane, celery_worker):
    require(services.rabbitmq.url, "rabbitmq")
    result = celery_worker.send_task("coreplane.ping")
    assert result.get(timeout=60) == "pong"
    ping = control_plane.coreplane("worker", "--ping")
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_flower_serves_with_basic_auth(services, control_plane):
    require(services.rabbitmq.url, "rabbitmq")
    port = free_port()
    env = {**control_plane.env, "COREPLANE_TASKS__FLOWER_BASIC_AUTH": "ops:flower-test"}
    proc = subprocess.Popen(
        [COREPLANE, "flower", f"--port={port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def answered() -> httpx.Response:
            assert proc.poll() is None, "flower exited"
            return httpx.get(f"{url}/healthcheck", timeout=2)

        health = until("flower to answer", answered, 30, 0.3, ignoring=(httpx.HTTPError,))
        assert health.text == "OK"
        assert httpx.get(f"{url}/workers").status_code == 401
        assert httpx.get(f"{url}/workers", auth=("ops", "flower-test")).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
