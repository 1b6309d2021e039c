"""Agent loops. Each has run_once() so a test runs exactly one iteration (STYLE.md).

TargetLoop probes one backend; Shipper turns what was collected into batches, spools
each before sending, and sends the spool in order; HeartbeatLoop says the agent lives.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from agents.client import ControlPlaneClient, Refused, Retryable
from agents.collectors import Observation
from agents.collectors.base import Collector
from agents.collectors.registry import collector_class
from agents.config import TargetConfig
from agents.http import span
from agents.spool import Spool

log = logging.getLogger("coreplane.agent")
AGENT_SERVICE = "coreplane_agent"
REFUSED_EVENT = "agent.target_refused"
DISOWN_TRIES = 3  # a 409 names every refused target: the second try passes unless one moved meanwhile
MAX_BATCH_ID = 100  # the control plane's limit on a batch id
REPORT_TRIES = 5
RETRY_AFTER_CAP_S = 60.0  # a Retry-After longer than this is taken as this (a typo must not mute an agent)


def honoured(exc: Retryable) -> float:
    """Seconds to wait before the next try, as the control plane asked (capped); 0 if it did not."""
    return min(exc.retry_after_s or 0.0, RETRY_AFTER_CAP_S)


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


class Disowned:
    """Targets the control plane says another agent owns (an admin reassigned them): this
    agent stops reporting their health, in heartbeats and in health events, so its other
    targets are not refused with them. Their metrics still flow (they claim no ownership).
    Kept until the agent restarts: an operator then removes the target from agent.yaml."""

    def __init__(self, agent: str, buffer: Buffer | None = None) -> None:
        self.agent = agent
        self.buffer = buffer  # where the agent.target_refused event goes (None: only logged)
        self._lock = threading.Lock()
        self._keys: set[tuple[str, str]] = set()

    def __contains__(self, key: tuple[str | None, str | None]) -> bool:
        with self._lock:
            return key in self._keys

    def health_about(self, event: dict) -> bool:
        """True for a health event about a disowned target."""
        if event.get("event_type") != "health":
            return False
        return (event.get("service_name"), (event.get("details") or {}).get("instance")) in self

    def add(self, service: str, address: str, reason: str) -> None:
        """Disown a target: said once, in the log and as an event operators see in the console."""
        with self._lock:
            if (service, address) in self._keys:
                return
            self._keys.add((service, address))
        message = (
            f"the control plane refuses this agent's reports on {service} {address}: {reason}. Its "
            "health is no longer reported from here (its metrics still are) until the agent restarts. "
            f"If this agent should own it, an admin reassigns it: POST /api/v1/services/{service}"
            f'/instances/{address}/owner {{"agent": "{self.agent}"}}; otherwise remove it from agent.yaml.'
        )
        log.error("%s", message)
        if self.buffer is not None:
            self.buffer.add(
                events=[
                    {"event_type": REFUSED_EVENT, "service_name": AGENT_SERVICE, "timestamp": _now(),
                     "status": "warning",
                     "details": {"agent": self.agent, "target": service, "instance": address,
                                 "reason": reason, "message": message}}
                ]
            )  # fmt: skip


def not_owner(exc: Refused, kind: str, sent: int) -> dict[int, str] | None:
    """{index: reason} of the items a 409 refused only because another agent owns them;
    None when the refusal is anything else (or names an item that was not sent)."""
    if exc.status != 409 or not exc.errors:
        return None
    refused = {}
    for item in exc.errors:
        index = item.get("index")
        if item.get("code") != "not_owner" or item.get("kind") != kind or not isinstance(index, int):
            return None
        if not 0 <= index < sent:
            return None
        refused[index] = str(item.get("reason", "owned by another agent"))
    return refused


def resent_id(batch_id: str) -> str:
    """The id of what is left of a refused batch. Derived, not random: an agent that crashes
    between writing it and removing the original splits the original again into the same
    batch, which the control plane then answers as a duplicate."""
    new = f"{batch_id}-r"
    if len(new) <= MAX_BATCH_ID:
        return new
    return f"{batch_id[: MAX_BATCH_ID - 10]}-r{hashlib.sha256(batch_id.encode()).hexdigest()[:8]}"


def without_refused(batch: dict, refused: dict[int, str]) -> tuple[dict | None, list[tuple[str, str, str]]]:
    """Split a batch refused for health events about other agents' instances: (the rest, to
    send under a new id, or None when nothing is left; (service, instance, reason) of each
    dropped event). Nothing else of the batch is dropped."""
    events = batch.get("events") or []
    dropped = [
        (events[i]["service_name"], str((events[i].get("details") or {}).get("instance")), reason)
        for i, reason in sorted(refused.items())
    ]
    kept = [event for i, event in enumerate(events) if i not in refused]
    if not kept and not batch.get("metrics"):
        return None, dropped
    return {**batch, "batch_id": resent_id(batch["batch_id"]), "events": kept}, dropped


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
        self.collector: Collector | None = None
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
        if role_changed and obs.role is not None:  # (role_changed says it is; mypy cannot tell)
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

    def __init__(
        self,
        client: ControlPlaneClient,
        spool: Spool,
        buffer: Buffer,
        agent: str,
        disowned: Disowned | None = None,
    ) -> None:
        self.client = client
        self.spool = spool
        self.buffer = buffer
        self.agent = agent
        self.disowned = disowned or Disowned(agent, buffer)
        self.link_up = True
        self.push_errors = 0
        self.last_push_s: float | None = None
        self.resume_at = 0.0  # time.monotonic() before which the control plane asked for quiet

    def _own_metrics(self) -> list[dict]:
        batches, size = self.spool.depth()
        at = _now()
        tags = {"agent": self.agent}
        figures: dict[str, float] = {
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
        events = [event for event in events if not self.disowned.health_about(event)]
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

    def pause_s(self) -> float:
        """Seconds left of the wait a 503/429's Retry-After asked for (0 when none)."""
        return max(self.resume_at - time.monotonic(), 0.0)

    def send_pending(self) -> int:
        delivered = 0
        if self.pause_s():
            return delivered  # the batches wait in the spool, nothing is lost
        for path, body in self.spool.pending():
            started = time.perf_counter()
            try:
                attributes = {"coreplane.agent": self.agent, "coreplane.batch_bytes": len(body)}
                with span("agent push", client=True, attributes=attributes):
                    self.client.push_gzip(body)
            except Retryable as exc:
                self.push_errors += 1
                self.resume_at = time.monotonic() + honoured(exc)
                if exc.retry_after_s is not None:
                    log.info("control plane busy, retrying in %.1f s: %s", honoured(exc), exc)
                    return delivered  # it answered: the link is up, it asked for a pause
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
                if self._split(path, body, exc):
                    # What is left of it took its place in the spool: it goes first, on the
                    # pass this wakes at once (the order of health events matters).
                    self.buffer.urgent.set()
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

    def _split(self, path: Path, body: bytes, exc: Refused) -> bool:
        """A batch refused only for health events about other agents' instances: disown
        those targets and put the rest of the batch in its place. False: not that refusal."""
        batch = json.loads(gzip.decompress(body))
        refused = not_owner(exc, "events", len(batch.get("events") or []))
        if refused is None:
            return False
        rest, dropped = without_refused(batch, refused)
        for service, address, reason in dropped:
            self.disowned.add(service, address, reason)
        if rest is None:
            self.spool.remove(path)
        else:
            self.spool.replace(path, rest)
        after = f"the rest goes as {rest['batch_id']}" if rest else "nothing else was in it"
        log.warning(
            "batch %s: %d health event(s) about other agents' instances dropped; %s",
            batch.get("batch_id"), len(dropped), after,
        )  # fmt: skip
        return True

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
        self.retry_after_s = 0.0

    def run_once(self) -> list[dict]:
        """One poll; returns what was reported, one {id, ok, output, error} per action."""
        try:
            with span("agent poll", client=True, attributes={"coreplane.agent_id": self.agent_id}):
                actions = self.client.poll_actions(self.agent_id, self.wait_s)
        except (Retryable, Refused) as exc:
            self.failures += 1
            self.retry_after_s = honoured(exc) if isinstance(exc, Retryable) else 0.0
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

    def _run(self, action: dict, step) -> dict:
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
        self._report(action["id"], ok=ok, output=output, error=error)
        return {"id": action["id"], "ok": ok, "output": output, "error": error}

    def _report(self, action_id: str, *, ok: bool, output: dict, error: str | None) -> None:
        """Post a result; a busy control plane (503/429 with Retry-After) gets a few more
        tries after the wait it asked for, since the action's outcome exists only here."""
        for attempt in range(REPORT_TRIES):
            try:
                with span("agent action result", client=True, attributes={"coreplane.action.id": action_id}):
                    self.client.post_result(action_id, ok=ok, output=output, error=error)
                return
            except Retryable as exc:
                if exc.retry_after_s is None or attempt == REPORT_TRIES - 1:
                    log.error("could not report the result of action %s: %s", action_id, exc)
                    return
                time.sleep(honoured(exc))
            except Refused as exc:
                log.error("could not report the result of action %s: %s", action_id, exc)
                return

    def delay(self) -> float:
        if not self.failures:
            return 0.0
        return max(min(2.0 ** min(self.failures, 5), 30.0), self.retry_after_s)


class HeartbeatLoop:
    """Tells the control plane this agent is alive, every ``interval_s`` seconds."""

    def __init__(
        self,
        client: ControlPlaneClient,
        *,
        agent: str,
        interval_s: float,
        targets: Callable[[], list[dict]] = list,
        disowned: Disowned | None = None,
    ) -> None:
        self.client = client
        self.agent = agent
        self.interval_s = interval_s
        self.targets = targets
        self.disowned = disowned or Disowned(agent)
        self.hostname = socket.gethostname()
        self.started = time.monotonic()
        self.failures = 0
        self.retry_after_s = 0.0

    def run_once(self) -> bool:
        """Send one heartbeat; returns whether the control plane accepted it."""
        try:
            self._send()
        except (Retryable, Refused) as exc:
            self.failures += 1
            self.retry_after_s = honoured(exc) if isinstance(exc, Retryable) else 0.0
            if self.failures == 1 or self.failures % 30 == 0:
                log.warning("heartbeat failed (%d in a row): %s", self.failures, exc)
            return False
        if self.failures:
            log.info("control plane reachable again after %d failed heartbeat(s)", self.failures)
        self.failures = 0
        return True

    def _send(self) -> None:
        """The heartbeat, without disowned targets. A 409 naming targets another agent owns
        (an admin reassigned them) disowns those and sends it again at once without them:
        refused whole, it would leave this agent's other targets to go critical."""
        for attempt in range(DISOWN_TRIES):
            targets = [t for t in self.targets() if (t["service"], t["address"]) not in self.disowned]
            try:
                self.client.heartbeat(
                    agent=self.agent,
                    hostname=self.hostname,
                    uptime_s=time.monotonic() - self.started,
                    targets=targets,
                )
                return
            except Refused as exc:
                refused = not_owner(exc, "targets", len(targets))
                if refused is None or attempt == DISOWN_TRIES - 1:
                    raise
                for i, reason in refused.items():
                    self.disowned.add(targets[i]["service"], targets[i]["address"], reason)

    def delay(self) -> float:
        return max(
            backoff(self.interval_s, self.failures, cap_s=300.0), self.retry_after_s if self.failures else 0.0
        )
