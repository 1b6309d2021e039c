"""Alert to action: seconds from `kill -9` of a Redis to the action a policy rule starts
on the alert, through a private Prometheus and Alertmanager (TRIALS trials).

coreplane's path: the agent probes the Redis every second and reports it down, the control
plane's /metrics/backends says coreplane_redis_up 0, Prometheus (scraping and evaluating
every second) fires, Alertmanager (no group wait) posts to the webhook, the event wakes the
policy engine, the rule creates a cache.invalidate on another Redis (which the agent
carries out; each trial waits for it to succeed).

Baseline, the raw engines' own floor, measured on the same kills by the same Prometheus
and Alertmanager: an exporter in this process that PINGs the Redis on every scrape (as
redis_exporter does), a rule on its redis_up, and a bare http.server receiving the
webhook. The ratio is what coreplane's agent, store, webhook and engine add."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import redis
import yaml

from controlplane.settings import Settings
from tests.support.agents import spawn_agent
from tests.support.alert_rules import RULE_NAME, backend_down_rules, policy_rule
from tests.support.alert_stack import BareReceiver, Scrape, Stack, alert_stack, bare_receiver
from tests.support.redis_topology import RedisNode, redis_topology
from tests.support.results import Result
from tests.support.serve import running_control_plane
from tests.support.stores import fresh_schema
from tests.support.timing import epoch, until

TRIALS = int(os.environ.get("BENCH_ALERT_TRIALS", 5))
TIMEOUT_S = 90.0


@contextmanager
def bare_exporter(node: RedisNode) -> Iterator[str]:
    """host:port of a /metrics that PINGs ``node`` on each scrape: redis_up 1 or 0."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                with node.client() as c:  # short timeouts, no retries: like a scrape-time PING
                    up = int(bool(c.ping()))
            except redis.RedisError:
                up = 0
            body = f"# TYPE redis_up gauge\nredis_up {up}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="bare-exporter", daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _agent(base: str, token: str, ports: dict[str, int], work: Path) -> subprocess.Popen:
    targets = [{"type": "redis", "name": name, "address": f"redis://127.0.0.1:{port}/0", "interval_s": 1,
                "timeout_s": 0.5} for name, port in ports.items()]  # fmt: skip
    return spawn_agent(base, token, "alerts-bench", targets, work)


class Flow:
    """The running pieces of one benchmark run, and one kill/restart trial over them."""

    def __init__(self, api: httpx.Client, stack: Stack, receiver: BareReceiver, lab: RedisNode) -> None:
        self.api, self.stack, self.receiver, self.lab = api, stack, receiver, lab

    def up(self, expr: str) -> bool:
        answer = httpx.get(f"{self.stack.prometheus_url}/api/v1/query", params={"query": expr})
        return bool(answer.json()["data"]["result"])

    def action_after(self, t: float) -> dict | None:
        actions = self.api.get("/api/v1/actions", params={"rule": RULE_NAME}).json()
        return next((a for a in actions if epoch(a["created_at"]) > t), None)

    def event_after(self, status: str, t: float) -> dict | None:
        events = self.api.get("/api/v1/events", params={"event_type": "alert", "service_name": "lab"})
        return next((e for e in events.json()["events"] if e["status"] == status and epoch(e["timestamp"]) > t),
                    None)  # fmt: skip

    def finished(self, action_id: str) -> dict | None:
        action = self.api.get(f"/api/v1/actions/{action_id}").json()
        return action if action["state"] in ("succeeded", "failed", "cancelled") else None

    def trial(self) -> tuple[float, float]:
        """(coreplane's kill-to-action seconds, Prometheus+Alertmanager's kill-to-delivery)."""

        def wait(what: str, check):  # type: ignore[no-untyped-def]
            return until(what, check, TIMEOUT_S, every_s=0.02, logs=self.stack.logs)

        wait("both alerts resolved, Redis up", lambda: self.up('coreplane_redis_up{service="lab"} == 1')
             and self.up("redis_up == 1") and not self.up("ALERTS"))  # fmt: skip
        killed = time.time()
        self.lab.kill()
        action = wait("the rule's action", lambda: self.action_after(killed))
        notice = wait("the bare receiver's firing notice", lambda: self.receiver.first("firing", killed))
        done = wait("the action finishing", lambda: self.finished(action["id"]))
        if done["state"] != "succeeded":
            raise RuntimeError(f"the action did not succeed: {done}")
        restarted = time.time()
        self.lab.start()
        wait("the resolved alert event", lambda: self.event_after("resolved", restarted))
        wait("the bare receiver's resolved notice", lambda: self.receiver.first("resolved", restarted))
        return epoch(action["created_at"]) - killed, notice.at - killed


def trials(settings: Settings, count: int) -> tuple[list[float], list[float]]:
    ours, theirs = [], []
    hook_token = os.urandom(16).hex()
    with (
        redis_topology(replicas=0, master_name="lab") as lab,
        redis_topology(replicas=0, master_name="labcache") as cache,
        fresh_schema(settings) as url,
        tempfile.TemporaryDirectory() as work_dir,
    ):
        work = Path(work_dir)
        with running_control_plane(url, log=work / "serve.log", webhooks__alertmanager_token=hook_token) as (
            base,
            token,
        ):
            api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
            current = api.get("/api/v1/rules").json()
            text = current["yaml"].rstrip() + "\n\n" + yaml.safe_dump([policy_rule("lab", "labcache")])
            api.put("/api/v1/rules", json={"yaml": text, "version": current["version"]}).raise_for_status()
            agent = _agent(base, token, {"lab": lab.primary.port, "labcache": cache.primary.port}, work)
            try:
                with bare_exporter(lab.primary) as exporter, bare_receiver() as receiver:
                    scrapes = [
                        Scrape("coreplane-backends", base.removeprefix("http://"),
                               f"{base}/api/v1/webhooks/alertmanager", path="/metrics/backends",
                               honor_labels=True, token=hook_token, scrape_token=token),
                        Scrape("bare", exporter, receiver.url),
                    ]  # fmt: skip
                    with alert_stack(work / "stack", scrapes, backend_down_rules("lab", "bare")) as stack:
                        flow = Flow(api, stack, receiver, lab.primary)
                        for i in range(count):
                            mine, bare = flow.trial()
                            ours.append(round(mine, 3))
                            theirs.append(round(bare, 3))
                            print(f"bench: alerts trial {i + 1}: coreplane {mine:.2f} s to the action, "
                                  f"Prometheus+Alertmanager {bare:.2f} s to delivery", flush=True)  # fmt: skip
            finally:
                agent.terminate()
                agent.wait(timeout=30)
    return ours, theirs


def run(settings: Settings) -> list[Result]:
    ours, theirs = trials(settings, TRIALS)
    print(f"bench: alerts coreplane {ours}\nbench: alerts Prometheus+Alertmanager alone {theirs}", flush=True)
    return [
        Result(
            name="alert_to_action_s", ours=round(statistics.median(ours), 3),
            baseline=round(statistics.median(theirs), 3),
            unit=f"median s from kill -9 of a Redis to the action created ({TRIALS} trials, max "
                 f"{max(ours):.2f}); baseline: the same Prometheus+Alertmanager (1 s scrape and "
                 f"evaluation, no group wait) alone, to a bare receiver, max {max(theirs):.2f}",
            goal="report", met=None,
        )
    ]  # fmt: skip
