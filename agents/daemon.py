"""Assemble and run an agent: identity, spool, one thread per target, shipper, heartbeat."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import threading
from pathlib import Path

from agents.client import ControlPlaneClient, Refused, Retryable
from agents.config import AgentConfig, TargetConfig
from agents.runtime import ActionLoop, Buffer, Disowned, HeartbeatLoop, Shipper, TargetLoop
from agents.spool import Spool

log = logging.getLogger("coreplane.agent")


class AgentError(Exception):
    pass


M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def cap_malloc_arenas(arenas: int = 2) -> bool:
    """Let glibc's malloc keep at most ``arenas`` arenas. By default it grows one per thread
    up to 8 per core, and an agent has a thread per target: each arena holds freed memory
    of its own, about 2 MB of RSS in all for an agent watching every local service
    (bench/agent.py). Call before the threads start. An operator's MALLOC_ARENA_MAX wins;
    nothing happens off glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): no such knob
        return False
    return bool(mallopt and mallopt(M_ARENA_MAX, arenas) == 1)


def load_or_register(config: AgentConfig, admin_token: str | None) -> dict:
    """The agent's {id, name, token}: from its token file, or registered on first start
    with the admin credential and written to the file with mode 0600."""
    path = config.token_file
    if path.exists():
        identity = json.loads(path.read_text())
        if identity.get("name") != config.name:
            raise AgentError(f"{path} belongs to agent {identity.get('name')!r}, not {config.name!r}")
        if not _token_refused(config, identity["token"]):
            return identity
        if not admin_token:
            raise AgentError(
                f"the control plane does not know the token in {path}: "
                "set COREPLANE_ADMIN_TOKEN to register again"
            )
        log.warning("the control plane does not know the token in %s; registering again", path)
        path.unlink()
    if not admin_token:
        raise AgentError(
            f"{path} does not exist: set COREPLANE_ADMIN_TOKEN once so the agent can register itself"
        )
    client = ControlPlaneClient(config.control_plane_url, admin_token, config.request_timeout_s)
    try:
        identity = client.register(config.name)
    except Refused as exc:
        if exc.status == 409:
            raise AgentError(
                f"an agent named {config.name!r} is registered already; copy its token file to {path} "
                "or pick another name"
            ) from None
        raise AgentError(f"registration refused: {exc}") from None
    except Retryable as exc:
        raise AgentError(f"cannot reach the control plane to register: {exc}") from None
    finally:
        client.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(identity, out)
    log.info("registered as agent %s (%s); token kept in %s", identity["name"], identity["id"], path)
    return identity


def _token_refused(config: AgentConfig, token: str) -> bool:
    """True only when the control plane answers that it does not know the token
    (an unreachable control plane proves nothing)."""
    client = ControlPlaneClient(config.control_plane_url, token, config.request_timeout_s)
    try:
        client.poll_actions("00000000-0000-0000-0000-000000000000", 0)
    except Refused as exc:
        return exc.status == 401
    except Retryable:
        return False
    finally:
        client.close()
    return False


class Agent:
    def __init__(self, config: AgentConfig, identity: dict) -> None:
        self.config = config
        self.client = ControlPlaneClient(
            config.control_plane_url, identity["token"], config.request_timeout_s
        )
        # Long polls get their own connection so they never hold up a push.
        self.poll_client = ControlPlaneClient(
            config.control_plane_url, identity["token"], config.request_timeout_s
        )
        self.actions = ActionLoop(self.poll_client, agent_id=identity["id"], targets=config.targets)
        self.buffer = Buffer()
        self.spool = Spool(config.spool_dir, config.spool_max_bytes)
        self.loops = [TargetLoop(t, self.buffer) for t in config.targets]
        # One set shared by the heartbeat and the shipper: a target refused by either is
        # dropped from both (another agent owns it now).
        self.disowned = Disowned(config.name, self.buffer)
        self.shipper = Shipper(self.client, self.spool, self.buffer, config.name, self.disowned)
        self.heartbeat = HeartbeatLoop(
            self.client,
            agent=config.name,
            interval_s=config.heartbeat_interval_s,
            targets=lambda: [loop.catalog_entry() for loop in self.loops if loop.status is not None],
            disowned=self.disowned,
        )
        self._stop = threading.Event()

    def _every(self, run_once, delay) -> None:
        while not self._stop.is_set():
            try:
                run_once()
            except Exception:  # a loop must outlive one bad iteration
                log.exception("agent loop iteration failed")
            self._stop.wait(delay())

    def _ship(self) -> None:
        # Every flush interval, and at once when a health change is waiting: the control
        # plane must hear of a failed primary now, not at the next flush.
        while not self._stop.is_set():
            try:
                self.shipper.run_once()
            except Exception:
                log.exception("agent loop iteration failed")
            # After a 503/429, the pause it asked for (the spool keeps the batches meanwhile).
            self.buffer.urgent.wait(self.shipper.pause_s() or self.config.flush_interval_s)
            self.buffer.urgent.clear()

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(
                target=self._every,
                args=(loop.run_once, loop.delay),
                name=f"probe-{loop.target.name}",
                daemon=True,
            )
            for loop in self.loops
        ]
        threads.append(threading.Thread(target=self._ship, name="shipper", daemon=True))
        threads.append(
            threading.Thread(
                target=self._every,
                args=(self.actions.run_once, self.actions.delay),
                name="actions",
                daemon=True,
            )
        )
        threads.append(
            threading.Thread(
                target=self._every,
                args=(self.heartbeat.run_once, self.heartbeat.delay),
                name="heartbeat",
                daemon=True,
            )
        )
        for thread in threads:
            thread.start()
        return threads

    def stop(self) -> None:
        """Stop the loops, then flush what was collected (to the control plane or the spool)."""
        self._stop.set()
        self.buffer.urgent.set()
        for loop in self.loops:
            loop.close()
        self.shipper.run_once()
        self.client.close()
        self.poll_client.close()

    def interrupt(self) -> None:
        """Ask the loops to finish (a signal handler calls this; stop() cleans up)."""
        self._stop.set()
        self.buffer.urgent.set()

    def wait(self) -> None:
        self._stop.wait()


def default_config(settings, name: str, var: Path) -> AgentConfig:
    """Without agent.yaml: watch the host and every backend configured in the environment."""
    targets = [TargetConfig(type="host", name="host", address="/")]
    if settings.redis.url:
        targets.append(TargetConfig(type="redis", name="redis", address=settings.redis.url, role="primary"))
        targets += [
            TargetConfig(type="redis", name="redis", address=url, role="replica")
            for url in settings.redis.replica_urls
        ]
    targets += [
        TargetConfig(type="memcached", name="memcached", address=s) for s in settings.memcached.servers
    ]
    if settings.postgres.url:
        targets.append(TargetConfig(type="postgres", name="postgres", address=settings.postgres.url))
    if settings.rabbitmq.management_url:
        targets.append(
            TargetConfig(type="rabbitmq", name="rabbitmq", address=settings.rabbitmq.management_url)
        )
    if settings.rabbitmq.url:
        # The management API gives the age of each queue's oldest message.
        management = (
            {"management_url": settings.rabbitmq.management_url} if settings.rabbitmq.management_url else {}
        )
        targets.append(
            TargetConfig(type="celery", name="celery", address=settings.rabbitmq.url, options=management)
        )
    if settings.elasticsearch.url:
        es = settings.elasticsearch
        targets.append(
            TargetConfig(
                type="elasticsearch", name="elasticsearch", address=es.url,
                options={"username": es.username, "password": es.password} if es.username else {},
            )
        )  # fmt: skip
    if settings.s3.endpoint:
        s3 = settings.s3
        targets.append(
            TargetConfig(
                type="s3", name="s3", address=s3.endpoint,
                options={"access_key": s3.access_key, "secret_key": s3.secret_key, "secure": s3.secure},
            )
        )  # fmt: skip
    if settings.haproxy.socket:
        targets.append(TargetConfig(type="haproxy", name="haproxy", address=settings.haproxy.socket))
    if settings.redis.url:
        targets.append(TargetConfig(type="channels", name="channels", address=settings.redis.url))
    for target in targets:
        target.interval_s = settings.agent.probe_interval_s
    return AgentConfig(
        name=name,
        control_plane_url=settings.agent.control_plane_url,
        token_file=var / "agent" / f"{name}.token.json",
        spool_dir=var / "agent" / f"{name}.spool",
        heartbeat_interval_s=settings.agent.heartbeat_interval_s,
        request_timeout_s=settings.agent.request_timeout_s,
        targets=targets,
    )
