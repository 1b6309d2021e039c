"""Workers and queues as they are now: Celery's remote control for workers, RabbitMQ's
management API for queues. Nothing here is stored; each call asks the engines."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from controlplane.clock import utcnow
from controlplane.settings import Settings
from controlplane.tasks import topology

MAX_WORKERS = 500
MAX_ACTIVE_SHOWN = 20  # task ids listed per worker


def _replies(answer: Any) -> dict[str, Any]:
    return dict(list((answer or {}).items())[:MAX_WORKERS])


def workers(app: Any, timeout_s: float, *, heartbeats: Mapping[str, datetime] | None = None) -> list[dict]:
    """Every worker that answers ``stats`` within ``timeout_s`` (online), with its pool
    size, active and reserved tasks, plus workers known only from their heartbeat events
    (``heartbeats``: name -> last heartbeat, from the task monitor) that did not answer."""
    control = app.control
    stats = _replies(control.inspect(timeout=timeout_s).stats())
    now = utcnow()
    names = sorted(stats)
    active: dict[str, Any] = {}
    reserved: dict[str, Any] = {}
    if names:
        # Everyone who answered stats is asked by name: the calls stop once all have answered.
        asked = control.inspect(timeout=timeout_s, destination=names, limit=len(names))
        active, reserved = _replies(asked.active()), _replies(asked.reserved())
    known = dict(heartbeats or {})
    found = []
    for name in names:
        pool = stats[name].get("pool") or {}
        running = active.get(name) or []
        found.append({
            "name": name,
            "online": True,
            "pool_size": pool.get("max-concurrency"),
            "processes": len(pool.get("processes") or []),
            "active": len(running),
            "active_ids": [t.get("id") for t in running[:MAX_ACTIVE_SHOWN]],
            "reserved": len(reserved.get(name) or []),
            "pid": stats[name].get("pid"),
            "uptime_s": stats[name].get("uptime"),
            "last_heartbeat": max(known.get(name, now), now),  # it just answered
        })  # fmt: skip
    for name in sorted(set(known) - set(names))[: MAX_WORKERS - len(found)]:
        found.append({
            "name": name, "online": False, "pool_size": None, "processes": 0, "active": 0,
            "active_ids": [], "reserved": 0, "pid": None, "uptime_s": None, "last_heartbeat": known[name],
        })  # fmt: skip
    return found


def _management(settings: Settings) -> tuple[str, tuple[str, str], str]:
    """(management base URL, credentials, virtual host of the task broker)."""
    if not settings.rabbitmq.management_url:
        raise ValueError("RabbitMQ's management API is not configured (COREPLANE_RABBITMQ__MANAGEMENT_URL)")
    parts = urlsplit(settings.rabbitmq.management_url)
    base = urlunsplit(
        (parts.scheme, f"{parts.hostname}:{parts.port or 15672}", parts.path.rstrip("/"), "", "")
    )
    auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
    broker = urlsplit(settings.tasks.broker_url or settings.rabbitmq.url or "")
    vhost = unquote(broker.path[1:]) if len(broker.path) > 1 else "/"
    return base, auth, vhost


def _queue(api: httpx.Client, vhost: str, name: str, max_priority: int | None, now: float) -> dict:
    answer = api.get(f"/api/queues/{quote(vhost, safe='')}/{quote(name, safe='')}")
    if answer.status_code == 404:
        return {"name": name, "exists": False, "depth": 0, "consumers": 0, "oldest_age_s": None,
                "max_priority": max_priority}  # fmt: skip
    answer.raise_for_status()
    info = answer.json()
    head = info.get("head_message_timestamp")  # the AMQP timestamp make_celery stamps, in seconds
    return {
        "name": name,
        "exists": True,
        "depth": info.get("messages", 0),
        "ready": info.get("messages_ready", 0),
        "unacked": info.get("messages_unacknowledged", 0),
        "consumers": info.get("consumers", 0),
        "oldest_age_s": max(0.0, now - head)
        if isinstance(head, int | float) and info.get("messages")
        else None,
        "max_priority": (info.get("arguments") or {}).get("x-max-priority", max_priority),
    }


def queues(settings: Settings, *, timeout_s: float = 5.0) -> list[dict]:
    """Each declared work queue (depth, consumers, age of the oldest message, max priority)
    and then the dead-letter queue (``dead_letter``: true)."""
    base, auth, vhost = _management(settings)
    now = datetime.now(UTC).timestamp()
    tasks = settings.tasks
    with httpx.Client(base_url=base, auth=auth, timeout=timeout_s) as api:
        found = [
            _queue(api, vhost, name, top, now) | {"dead_letter": False} for name, top in tasks.queues.items()
        ]
        dead = topology.dead_letter_queue(tasks).name
        found.append(_queue(api, vhost, dead, None, now) | {"dead_letter": True})
    return found
