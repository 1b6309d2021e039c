"""Agent loops. Each has run_once() so a test runs exactly one iteration (STYLE.md).

TargetLoop probes one backend; Shipper turns what was collected into batches, spools
each before sending, and sends the spool in order; HeartbeatLoop says the agent lives.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from agents.client import ControlPlaneClient, Refused, Retryable
from agents.collectors import Observation
from agents.collectors.registry import collector_class
from agents.config import TargetConfig
from agents.http import span
from agents.spool import Spool

log = logging.getLogger("coreplane.agent")
AGENT_SERVICE = "coreplane_agent"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def instance_of(address: str) -> str:
    """host:port (or the socket path) of an address, never its credentials."""
    if "://" in address:
        parts = urlsplit(address)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    return address.rsplit("@", 1)[-1]


class Buffer:
    """Points and events waiting for the next batch; many writers, one reader."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.metrics: list[dict] = []
        self.events: list[dict] = []
        self.urgent = threading.Event()  # set when an event waits: the shipper sends at once

    def add(self, *, metrics: list[dict] = (), events: list[dict] = ()) -> None:  # type: ignore[assignment]
        with self._lock:
            self.metrics.extend(metrics)
            self.events.extend(events)
        if events:
            self.urgent.set()

    def drain(self) -> tuple[list[dict], list[dict]]:
        with self._lock:
            metrics, events, self.metrics, self.events = self.metrics, self.events, [], []
        return metrics, events


def backoff(interval_s: float, failures: int, cap_s: float) -> float:
    """The next wait: the interval while healthy, doubling per failure up to ``cap_s``, with
    ±10 % jitter so a fleet of agents does not beat in step."""
    base = interval_s if not failures else min(interval_s * 2 ** min(failures, 10), max(cap_s, interval_s))
    return base * random.uniform(0.9, 1.1)  # noqa: S311 - jitter, not cryptography


class TargetLoop:
    """Probes one target every interval; health changes become events."""

    def __init__(self, target: TargetConfig, buffer: Buffer) -> None:
        self.target = target
        self.buffer = buffer
        self.collector = None
        self.status: str | None = None
        self.message = ""
        self.role = target.role  # as configured, then as the backend says (a replica promoted)
        self.seen_role: str | None = None  # what the last successful probe saw (None after a failure)
        self.seen_at: str | None = None  # when that probe began
        self.failures = 0
        self.tags = {"instance": instance_of(target.address), **target.tags}
        if target.role:
            self.tags["role"] = target.role

    def catalog_entry(self) -> dict:
        """This target as the catalog knows it (sent with each heartbeat)."""
        return {"service": self.target.name, "kind": self.target.type, "address": self.tags["instance"],
                "status": self.status, "role": self.seen_role, "observed_at": self.seen_at,
                "message": self.message[:2000],
                "tags": {k: v for k, v in self.target.tags.items()}}  # fmt: skip

    def _points(self, obs: Observation, at: str) -> list[dict]:
        return [
            {"metric_type": name, "service_name": self.target.name, "timestamp": at,
             "value": value, "tags": {**self.tags, **tags}}
            for name, value, tags in obs.metrics
        ]  # fmt: skip

    def run_once(self) -> Observation:
        # A health change (and the role) is stamped when the probe began: it was read no
        # earlier. The figures are stamped when it ended, so a slow probe's arrive fresh.
        started, read_at = time.perf_counter(), _now()
        try:
            if self.collector is None:
                self.collector = collector_class(self.target.type)(self.target)
            obs = self.collector.collect()
            self.failures = 0
            up = f"coreplane_{self.target.type}_up"
            if not any(name == up for name, _value, _tags in obs.metrics):
                obs.add(up, 1)  # every target has an up series, 0 on a failed probe (below)
        except Exception as exc:  # noqa: BLE001 - any probe failure is a critical health state
            self.failures += 1
            obs = Observation(status="critical", message=f"{type(exc).__name__}: {exc}"[:500])
            obs.add(f"coreplane_{self.target.type}_up", 0)
            if self.failures == 1 or self.failures % 30 == 0:
                log.warning("%s %s: %s", self.target.type, self.target.name, obs.message)
        at = _now()
        labels = {"target": self.target.name, "type": self.target.type, **self.tags}
        agent_points = [
            {"metric_type": "coreplane_agent_probe_duration_seconds", "service_name": AGENT_SERVICE,
             "timestamp": at, "value": time.perf_counter() - started, "tags": labels},
            {"metric_type": "coreplane_agent_probe_failures", "service_name": AGENT_SERVICE,
             "timestamp": at, "value": float(self.failures), "tags": labels},
        ]  # fmt: skip
        events = []
        self.seen_role, self.seen_at = (obs.role if obs.status != "critical" else None), read_at
        role_changed = obs.role is not None and obs.role != self.role
        if role_changed:
            self.role = self.tags["role"] = obs.role
        if obs.status != self.status or role_changed:
            events.append(
                {"event_type": "health", "service_name": self.target.name, "timestamp": read_at,
                 "status": obs.status,
                 "details": {"message": obs.message, "previous": self.status, "type": self.target.type,
                             **self.tags}}
            )  # fmt: skip
            self.status = obs.status
        self.message = obs.message
        self.buffer.add(metrics=self._points(obs, at) + agent_points, events=events)
        return obs

    def delay(self) -> float:
        return backoff(self.target.interval_s, self.failures, cap_s=60.0)

    def close(self) -> None:
        if self.collector is not None:
            with contextlib.suppress(Exception):  # closing a broken client
                self.collector.close()


class Shipper:
    """Batches what was collected, spools it, and sends the spool oldest first."""

    def __init__(self, client: ControlPlaneClient, spool: Spool, buffer: Buffer, agent: str) -> None:
        self.client = client
        self.spool = spool
        self.buffer = buffer
        self.agent = agent
        self.link_up = True
        self.push_errors = 0
        self.last_push_s: float | None = None

    def _own_metrics(self) -> list[dict]:
        batches, size = self.spool.depth()
        at = _now()
        tags = {"agent": self.agent}
        figures = {
            "coreplane_agent_spool_batches": batches,
            "coreplane_agent_spool_bytes": size,
            "coreplane_agent_push_errors": self.push_errors,
        }
        if self.last_push_s is not None:
            figures["coreplane_agent_push_seconds"] = self.last_push_s
        return [
            {
                "metric_type": k,
                "service_name": AGENT_SERVICE,
                "timestamp": at,
                "value": float(v),
                "tags": tags,
            }
            for k, v in figures.items()
        ]

    def run_once(self) -> int:
        """Spool what was collected, then send; returns how many batches were delivered."""
        metrics, events = self.buffer.drain()
        if metrics or events:
            batch_id = f"{self.agent}-{uuid.uuid4().hex}"
            self.spool.append(
                {
                    "batch_id": batch_id,
                    "agent": self.agent,
                    "metrics": metrics + self._own_metrics(),
                    "events": events,
                }
            )
        return self.send_pending()

    def send_pending(self) -> int:
        delivered = 0
        for path, body in self.spool.pending():
            started = time.perf_counter()
            try:
                attributes = {"coreplane.agent": self.agent, "coreplane.batch_bytes": len(body)}
                with span("agent push", client=True, attributes=attributes):
                    self.client.push_gzip(body)
            except Retryable as exc:
                self.push_errors += 1
                if self.link_up:
                    log.warning("control plane unreachable, spooling: %s", exc)
                self.link_up = False
                return delivered
            except Refused as exc:
                if exc.status in (401, 403):
                    # A credential problem, not a bad batch: keep it for when it is fixed.
                    self.push_errors += 1
                    log.error("control plane refused this agent's token, keeping the spool: %s", exc)
                    return delivered
                log.error("control plane refused batch %s (dead-lettered): %s", path.name, exc)
                self.spool.dead_letter(path, str(exc))
                continue
            self.last_push_s = time.perf_counter() - started
            self.spool.remove(path)
            delivered += 1
            if not self.link_up:
                self.link_up = True
                log.info("control plane reachable again; replaying the spool")
                self._report_drops()
        return delivered

    def _report_drops(self) -> None:
        if self.spool.dropped:
            dropped, self.spool.dropped = self.spool.dropped, 0
            self.buffer.add(
                events=[
                    {"event_type": "agent.spool_overflow", "service_name": AGENT_SERVICE, "timestamp": _now(),
                     "status": "warning",
                     "details": {"agent": self.agent, "dropped_batches": dropped,
                                 "message": f"{dropped} batch(es) dropped while the control plane was away"}}
                ]
            )  # fmt: skip


class ActionLoop:
    """Long-polls the control plane for actions and runs each through its actuator."""

    def __init__(
        self,
        client: ControlPlaneClient,
        *,
        agent_id: str,
        wait_s: float = 20.0,
        targets: list[TargetConfig] = (),  # type: ignore[assignment]
    ) -> None:
        self.client = client
        self.agent_id = agent_id
        self.wait_s = wait_s
        self.targets = list(targets)
        self.failures = 0

    def run_once(self) -> list[dict]:
        """One poll; returns what was reported, one {id, ok, output, error} per action."""
        try:
            with span("agent poll", client=True, attributes={"coreplane.agent_id": self.agent_id}):
                actions = self.client.poll_actions(self.agent_id, self.wait_s)
        except (Retryable, Refused) as exc:
            self.failures += 1
            if self.failures == 1:
                log.warning("cannot poll for actions: %s", exc)
            return []
        self.failures = 0
        reports = []
        for action in actions:
            # The step continues the trace of the request or round that created the action.
            attributes = {"coreplane.action.id": action["id"], "coreplane.action.kind": action["kind"],
                          "coreplane.action.target": action["target"]}  # fmt: skip
            traceparent = (action.get("links") or {}).get("traceparent")
            with span(
                f"agent action {action['kind']}", traceparent=traceparent, attributes=attributes
            ) as step:
                reports.append(self._run(action, step))
        return reports

    def _run(self, action: dict, step) -> dict:  # type: ignore[no-untyped-def]
        from agents.actuators import ActuatorError, actuator, bind

        log.info("running action %s %s on %s", action["id"], action["kind"], action["target"])
        try:
            self.client.start_action(action["id"])
        except (Retryable, Refused) as exc:
            log.warning("could not report the start of action %s: %s", action["id"], exc)
        try:
            params = bind(action["kind"], action.get("params") or {}, self.targets)
            output, ok, error = actuator(action["kind"])(params), True, None
        except ActuatorError as exc:
            output, ok, error = {}, False, str(exc)
        except Exception as exc:  # noqa: BLE001 - the backend's own error is the result
            output, ok, error = {}, False, f"{type(exc).__name__}: {exc}"
        if step is not None:
            step.set_attribute("coreplane.action.ok", ok)
        try:
            with span("agent action result", client=True, attributes={"coreplane.action.id": action["id"]}):
                self.client.post_result(action["id"], ok=ok, output=output, error=error)
        except (Retryable, Refused) as exc:
            log.error("could not report the result of action %s: %s", action["id"], exc)
        return {"id": action["id"], "ok": ok, "output": output, "error": error}

    def delay(self) -> float:
        return 0.0 if not self.failures else min(2.0 ** min(self.failures, 5), 30.0)


class HeartbeatLoop:
    """Tells the control plane this agent is alive, every ``interval_s`` seconds."""

    def __init__(
        self,
        client: ControlPlaneClient,
        *,
        agent: str,
        interval_s: float,
        targets: Callable[[], list[dict]] = list,
    ) -> None:
        self.client = client
        self.agent = agent
        self.interval_s = interval_s
        self.targets = targets
        self.hostname = socket.gethostname()
        self.started = time.monotonic()
        self.failures = 0

    def run_once(self) -> bool:
        """Send one heartbeat; returns whether the control plane accepted it."""
        try:
            self.client.heartbeat(
                agent=self.agent,
                hostname=self.hostname,
                uptime_s=time.monotonic() - self.started,
                targets=self.targets(),
            )
        except (Retryable, Refused) as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 30 == 0:
                log.warning("heartbeat failed (%d in a row): %s", self.failures, exc)
            return False
        if self.failures:
            log.info("control plane reachable again after %d failed heartbeat(s)", self.failures)
        self.failures = 0
        return True

    def delay(self) -> float:
        return backoff(self.interval_s, self.failures, cap_s=300.0)
