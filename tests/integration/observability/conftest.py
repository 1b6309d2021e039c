"""The estate the observability tests look at, all real: a `coreplane serve` on a fresh
PostgreSQL schema, a real agent watching every backend in var/services.env plus a second
HAProxy (service "mesh", its servers checked), a Celery worker running tasks, and a private
Prometheus started from alerts/prometheus.yml with the addresses filled in."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from dotenv import dotenv_values
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from agents.config import TargetConfig
from agents.daemon import default_config
from tests.support.agents import running_agent, running_worker
from tests.support.console import console_login
from tests.support.messaging_analytics import messaging_estate
from tests.support.processes import free_port, wait_ready
from tests.support.serve import start_serve
from tests.support.services import ROOT, SERVICES_ENV, require
from tests.support.storage import purge, raw_client
from tests.support.stores import fresh_schema

SHIPPED_CONFIG = ROOT / "alerts" / "prometheus.yml"
RENDER = ROOT / "scripts" / "prometheus-config.sh"  # fills the addresses in; fails on a lost placeholder
RT_ROOM = "estate:traffic"  # the realtime dashboard's room kind estate:*
SCRAPE_S = 2  # the shipped 15 s, shortened so a test sees rates within seconds
# A rule that always holds, in dry run: the engine records an evaluation and does nothing.
PROBE_RULES = """
- name: telemetry-probe
  description: Holds whenever nothing reports as service nothing-here (always); dry run.
  trigger: {absence: {service: nothing-here, for_s: 1}}
  action: {kind: cache.invalidate, target: nothing-here, params: {keys: [probe]}}
  dry_run: true
"""


@dataclass
class Estate:
    url: str
    token: str
    prometheus: str
    database_url: str
    queue: str  # the Celery queue the worker consumes
    bucket: str  # the storage bucket the traffic writes to

    def query(self, expr: str) -> list[dict]:
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", f"{expr}: {answer}"
        return answer["data"]["result"]


def render_config(*, control_plane: str, alertmanager: str, token_file: Path, rules_root: Path) -> str:
    """alerts/prometheus.yml with its addresses filled in by scripts/prometheus-config.sh, as
    the harness and docker-compose.yml have it; then its rule files made absolute and every
    interval shortened, for a test."""
    rendered = subprocess.run(
        ["sh", str(RENDER), str(SHIPPED_CONFIG), control_plane, control_plane, alertmanager, str(token_file)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    config = yaml.safe_load(rendered.stdout)
    config["global"] |= {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"}
    config["rule_files"] = [str(rules_root / pattern) for pattern in config["rule_files"]]
    for job in config["scrape_configs"]:
        for sd in job.get("http_sd_configs", []):
            sd["refresh_interval"] = f"{SCRAPE_S}s"
    return yaml.safe_dump(config, sort_keys=False)


@contextlib.contextmanager
def running_prometheus(config: str, tmp: Path):
    """A private Prometheus on a free port with ``config``; yields its base URL."""
    (tmp / "prometheus.yml").write_text(config)
    port = free_port()
    log = (tmp / "prometheus.log").open("a")
    proc = subprocess.Popen(
        ["/usr/bin/prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/-/ready", proc, tmp / "prometheus.log", timeout_s=30)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


@contextlib.contextmanager
def mesh_haproxy(tmp: Path, upstream_port: int):
    """A second real HAProxy: frontend `edge` -> backend `app` with two checked servers, both
    the control plane; yields (admin socket, frontend port)."""
    port, name = free_port(), f"obs{uuid.uuid4().hex[:6]}"
    config = tmp / "mesh.cfg"
    config.write_text("\n".join([
        "defaults", "  mode http", "  timeout connect 1s", "  timeout client 5s", "  timeout server 5s",
        "frontend edge", f"  bind 127.0.0.1:{port}", "  default_backend app",
        "backend app", "  option httpchk GET /healthz",
        f"  server a 127.0.0.1:{upstream_port} check inter 1s",
        f"  server b 127.0.0.1:{upstream_port} check inter 1s",
    ]) + "\n")  # fmt: skip
    helper = ROOT / "scripts" / "haproxy-instance.sh"
    started = subprocess.run(["bash", helper, "start", name, config], capture_output=True, text=True)
    assert started.returncode == 0, f"haproxy did not start: {started.stderr}"
    try:
        yield started.stdout.strip(), port
    finally:
        subprocess.run(["bash", helper, "stop", name], check=True)


class Traffic:
    """What an estate in use does, every second: range queries, requests through the mesh,
    Celery tasks, an operator's open overview, a realtime room message to a member and a
    realtime connection opened and closed. Without it a rate is 0/0 and a latency has no
    sample."""

    def __init__(self, estate: Estate, mesh_port: int, celery) -> None:  # type: ignore[no-untyped-def]
        self.estate, self.mesh_port, self.celery = estate, mesh_port, celery
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self.member: ClientConnection | None = None  # the realtime room's member

    def _run(self) -> None:
        admin = {"Authorization": f"Bearer {self.estate.token}"}
        console, _ = console_login(self.estate.url, token=self.estate.token)
        cookie = "; ".join(f"{k}={v}" for k, v in console.cookies.items())
        overview = self.estate.url.replace("http", "ws") + "/ws/console?page=overview"
        with (
            httpx.Client(timeout=5) as http,
            contextlib.closing(console),
            connect(overview, additional_headers={"Cookie": cookie, "Origin": self.estate.url}) as ws,
        ):
            while not self.stop.wait(1.0):
                with contextlib.suppress(TimeoutError):  # read what the live page pushed
                    while ws.recv(timeout=0):
                        pass
                with contextlib.suppress(httpx.HTTPError):
                    http.get(f"{self.estate.url}/api/v1/metrics", headers=admin,
                             params={"metric_type": "coreplane_redis_up", "service_name": "redis"})  # fmt: skip
                    http.get(f"http://127.0.0.1:{self.mesh_port}/healthz")
                self.celery.send_task("coreplane.ping", queue=self.estate.queue, ignore_result=True)
                self._realtime(http, admin, {"Cookie": cookie, "Origin": self.estate.url})
                self._storage(http, admin)

    def _realtime(self, http: httpx.Client, admin: dict, headers: dict) -> None:
        """A message to the room the member (held open, on the console session) is in, read by
        it, with a ping so it is never idle; a second connection opened and closed. A member
        the server closed is opened again on the next round."""
        rt = self.estate.url.replace("http", "ws") + "/ws/rt"
        try:
            if self.member is None:
                # Held across rounds, so not in a with block (legacy=True says that is meant).
                self.member = connect(rt, additional_headers=headers, legacy=True)
                self.member.send(json.dumps({"type": "subscribe", "room": RT_ROOM, "id": 1}))
            with contextlib.suppress(httpx.HTTPError):
                http.post(f"{self.estate.url}/api/v1/realtime/rooms/{RT_ROOM}/messages", headers=admin,
                          json={"data": {"traffic": True}})  # fmt: skip
            self.member.send(json.dumps({"type": "ping", "id": 2}))
            with contextlib.suppress(TimeoutError):
                while self.member.recv(timeout=0):
                    pass
            with connect(rt, additional_headers=headers):
                pass
        except (OSError, WebSocketException):
            if self.member is not None:
                self.member.close()
            self.member = None

    def _storage(self, http: httpx.Client, admin: dict) -> None:
        """An object written and read back in the estate's bucket, and one asked for that is
        not there (the error panels need an error)."""
        objects = f"{self.estate.url}/api/v1/storage/{self.estate.bucket}/objects"
        with contextlib.suppress(httpx.HTTPError):
            http.put(f"{objects}/traffic/latest", headers=admin, content=b"traffic " * 64)
            http.get(f"{objects}/traffic/latest", headers=admin)
            http.head(f"{objects}/traffic/missing", headers=admin)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        if self.member is not None:
            self.member.close()


def _setup_store(url: str, admin: dict, tmp: Path) -> Path:
    """A viewer token for Prometheus' service discovery (written to a file, as an operator
    would), an exporter in the catalog, the probe rule, one action and one rejected batch."""
    made = httpx.post(f"{url}/api/v1/tokens", headers=admin, json={"name": "prometheus", "role": "viewer"})
    assert made.status_code == 201, made.text
    token_file = tmp / "coreplane-token"
    token_file.write_text(made.json()["token"] + "\n")
    haproxy_metrics = dotenv_values(SERVICES_ENV)["COREPLANE_HAPROXY__METRICS_URL"]
    exporter = {"service": "haproxy-exporter", "kind": "exporter", "status": "passing",
                "address": httpx.URL(haproxy_metrics).netloc.decode()}  # fmt: skip
    assert httpx.post(f"{url}/api/v1/services/register", headers=admin, json=[exporter]).status_code == 202
    rules = httpx.put(f"{url}/api/v1/rules", headers=admin, json={"version": 0, "yaml": PROBE_RULES})
    assert rules.status_code == 200, rules.text
    refused = httpx.post(f"{url}/api/v1/ingest", headers=admin, content=b"{}")
    assert refused.status_code == 422, refused.text
    return token_file


def _setup_storage(url: str, admin: dict) -> str:
    """A bucket with a quota and objects under two prefixes: the storage dashboard's usage,
    quota and prefix panels then have figures (the storage round counts it within a second)."""
    bucket = f"obs-{uuid.uuid4().hex[:12]}"
    made = httpx.post(
        f"{url}/api/v1/storage/buckets", headers=admin, json={"name": bucket, "quota_bytes": 10**9}
    )
    assert made.status_code == 201, made.text
    for key in ("logs/a", "logs/b", "img/a"):
        put = httpx.put(
            f"{url}/api/v1/storage/{bucket}/objects/{key}", headers=admin, content=key.encode() * 100
        )
        assert put.status_code in (200, 201), put.text
    return bucket


def _drop_queue(services, queue: str) -> None:  # type: ignore[no-untyped-def]
    from controlplane.tasks import make_celery

    with make_celery(services).connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)


@pytest.fixture(scope="package")
def estate(services, tmp_path_factory):
    for value, name in ((services.postgres.url, "postgres"), (services.redis.url, "redis"),
                        (services.rabbitmq.url, "rabbitmq"), (services.haproxy.socket, "haproxy"),
                        (services.alertmanager.url, "alertmanager")):  # fmt: skip
        require(value, name)
    tmp = tmp_path_factory.mktemp("estate")
    token = secrets.token_urlsafe(32)
    admin = {"Authorization": f"Bearer {token}"}
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(fresh_schema(services))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
        env |= {k: v for k, v in dotenv_values(SERVICES_ENV).items() if v is not None}
        env |= {"COREPLANE_DATABASE_URL": database_url, "COREPLANE_ADMIN_TOKEN": token,
                "COREPLANE_SERVER__PORT": str(port), "COREPLANE_LOG_LEVEL": "warning",
                # The storage round each second, a bucket counted in full every 2 s: the
                # usage and top-prefix panels see the objects the setup wrote at once.
                "COREPLANE_STORAGE__LOOP_INTERVAL_S": "1", "COREPLANE_STORAGE__COUNT_INTERVAL_S": "2"}  # fmt: skip
        # Messaging on a vhost of its own, with a dead letter the archive stores: the
        # messaging dashboard's per-queue and archive panels then have figures.
        env |= stack.enter_context(messaging_estate(services))
        serve = start_serve(env, tmp / "serve.log")
        stack.callback(lambda: (serve.terminate(), serve.wait(timeout=15)))
        url = f"http://127.0.0.1:{port}"
        token_file = _setup_store(url, admin, tmp)
        require(services.s3.endpoint, "s3")
        bucket = _setup_storage(url, admin)
        stack.callback(purge, raw_client(services), bucket)

        queue = f"obs-{uuid.uuid4().hex[:8]}"
        node = f"{queue}@obs"
        # Declared alike by the worker (which consumes only declared queues) and the publisher.
        queues = {"celery": 10, queue: 10}
        env["COREPLANE_TASKS__QUEUES"] = json.dumps(queues)
        own = services.model_copy(update={"tasks": services.tasks.model_copy(update={"queues": queues})})
        stack.callback(_drop_queue, services, queue)  # after the worker stops (callbacks run last-in first)
        celery = stack.enter_context(
            running_worker(own, env, f"--queues={queue}", f"--name={node}", name=node)
        )
        mesh_socket, mesh_port = stack.enter_context(mesh_haproxy(tmp, port))
        targets = default_config(services, "obs-agent", tmp).targets
        targets.append(TargetConfig(type="haproxy", name="mesh", address=mesh_socket))
        for target in targets:
            target.interval_s = 2
            if target.type == "celery":
                target.options["queues"] = [queue]
        stack.enter_context(running_agent(url, token, tmp, *targets, name="obs-agent"))

        alertmanager = httpx.URL(services.alertmanager.url).netloc.decode()
        config = render_config(control_plane=f"127.0.0.1:{port}", alertmanager=alertmanager,
                               token_file=token_file, rules_root=ROOT / "alerts")  # fmt: skip
        prometheus = stack.enter_context(running_prometheus(config, tmp))
        found = Estate(url, token, prometheus, database_url, queue, bucket)
        stack.enter_context(Traffic(found, mesh_port, celery))
        action = httpx.post(f"{url}/api/v1/actions", headers=admin, json={
            "kind": "cache.invalidate", "target": "redis", "params": {"keys": ["obs:probe"]}})  # fmt: skip
        assert action.status_code == 201, action.text
        yield found
