"""A private Prometheus + Alertmanager on loopback, for the alert benchmark and tests:
scrapes and rule evaluations every second, no grouping delay, one webhook receiver per
scrape job (an alert is routed by its ``job`` label). Killed on exit.

Also a bare webhook receiver (an http.server thread) that notes when each notice arrives,
and a running `coreplane serve` with extra settings (the webhook token)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from tests.support.processes import free_port, spawn, stop, wait_ready

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
SHIPPED_PROMETHEUS = Path(__file__).resolve().parents[2] / "alerts" / "prometheus.yml"


@dataclass(frozen=True)
class Scrape:
    """A scrape job whose alerts go to ``webhook`` (with ``token`` as the bearer, if any);
    Prometheus scrapes it with ``scrape_token`` as the bearer, if any."""

    job: str
    target: str  # host:port
    webhook: str
    path: str = "/metrics"
    honor_labels: bool = False
    token: str | None = None
    scrape_token: str | None = None


@dataclass
class Stack:
    prometheus_url: str
    alertmanager_url: str
    root: Path

    def logs(self) -> str:
        """The tails of both logs, for a failing assertion's message."""
        return "\n".join(
            f"--- {name}\n{(self.root / name).read_text(errors='replace')[-3000:]}"
            for name in ("prometheus.log", "alertmanager.log")
        )


def alertmanager_config(scrapes: list[Scrape], root: Path) -> dict:
    receivers, routes = [], []
    for scrape in scrapes:
        hook: dict = {"url": scrape.webhook, "send_resolved": True}
        if scrape.token:
            secret = root / f"{scrape.job}.token"
            secret.write_text(scrape.token)
            secret.chmod(0o600)
            hook["http_config"] = {"authorization": {"type": "Bearer", "credentials_file": str(secret)}}
        receivers.append({"name": scrape.job, "webhook_configs": [hook]})
        routes.append({"receiver": scrape.job, "matchers": [f'job="{scrape.job}"']})
    return {
        "route": {
            "receiver": scrapes[0].job,
            "group_by": ["alertname", "service", "instance"],
            # Deliver at once, and every change within a second.
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
            "routes": routes,
        },
        "receivers": receivers,
    }


def _scrape_job(scrape: Scrape, root: Path) -> dict:
    """The job alerts/prometheus.yml ships under the same name (coreplane-backends, say) with
    its address and token file filled in, so the stack scrapes the control plane as shipped;
    a job of its own for any other target."""
    shipped = {
        job["job_name"]: job for job in yaml.safe_load(SHIPPED_PROMETHEUS.read_text())["scrape_configs"]
    }
    if scrape.job in shipped:
        job = shipped[scrape.job]
        assert (job.get("metrics_path", "/metrics"), job.get("honor_labels", False)) == (
            scrape.path,
            scrape.honor_labels,
        ), f"{scrape.job} is scraped differently in {SHIPPED_PROMETHEUS}"
        job["static_configs"] = [{"targets": [scrape.target]}]
    else:
        job = {
            "job_name": scrape.job,
            "metrics_path": scrape.path,
            "honor_labels": scrape.honor_labels,
            "static_configs": [{"targets": [scrape.target]}],
        }
    if scrape.scrape_token:
        secret = root / f"{scrape.job}.scrape-token"
        secret.write_text(scrape.scrape_token)
        secret.chmod(0o600)
        job["authorization"] = {"type": "Bearer", "credentials_file": str(secret)}
    return job


def prometheus_config(scrapes: list[Scrape], alertmanager: str, root: Path) -> dict:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [_scrape_job(s, root) for s in scrapes],
    }


@contextmanager
def alert_stack(root: Path, scrapes: list[Scrape], rules: dict) -> Iterator[Stack]:
    """Alertmanager, then Prometheus with ``rules`` (a rule file's content), both ready."""
    root.mkdir(parents=True, exist_ok=True)
    am_port, prom_port = free_port(), free_port()
    (root / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(scrapes, root)))
    (root / "rules.yml").write_text(yaml.safe_dump(rules))
    (root / "prometheus.yml").write_text(
        yaml.safe_dump(prometheus_config(scrapes, f"127.0.0.1:{am_port}", root))
    )
    processes: list[subprocess.Popen] = []
    try:
        am_log = root / "alertmanager.log"
        processes.append(spawn([
            ALERTMANAGER, f"--config.file={root / 'alertmanager.yml'}", f"--storage.path={root / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",  # no gossip port: the shared instance may hold the default
        ], am_log))  # fmt: skip
        wait_ready(f"http://127.0.0.1:{am_port}/-/ready", processes[-1], am_log)
        prom_log = root / "prometheus.log"
        processes.append(spawn([
            PROMETHEUS, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ], prom_log))  # fmt: skip
        wait_ready(f"http://127.0.0.1:{prom_port}/-/ready", processes[-1], prom_log)
        yield Stack(f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}", root)
    finally:
        for process in reversed(processes):
            stop(process)


@dataclass
class Notice:
    at: float  # time.time() when it arrived
    status: str  # the alert's
    alertname: str


@dataclass
class BareReceiver:
    """An http.server on loopback that records each alert of each webhook post."""

    url: str = ""
    notices: list[Notice] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def first(self, status: str, after: float) -> Notice | None:
        with self.lock:
            return next((n for n in self.notices if n.status == status and n.at >= after), None)


@contextmanager
def bare_receiver() -> Iterator[BareReceiver]:
    receiver = BareReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrived = time.time()
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            with receiver.lock:
                for alert in body.get("alerts", []):
                    receiver.notices.append(
                        Notice(arrived, alert["status"], alert["labels"].get("alertname", ""))
                    )
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, name="bare-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
