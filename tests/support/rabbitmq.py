"""The harness's RabbitMQ, one virtual host per test: its own exchanges, queues and dead
letters, so nothing another test left behind or sends can reach it.

    with rabbit_vhost(services) as url:   # amqp://.../t-1a2b3c4d
        ...
        queue_info(services, url, "orders")["messages_ready"]
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from controlplane.settings import Settings
from tests.support.services import require


def management(services: Settings) -> tuple[str, tuple[str, str]]:
    """The management API's base URL (no credentials in it) and its basic-auth pair."""
    parts = urlsplit(services.rabbitmq.management_url or "")
    base = urlunsplit((parts.scheme, f"{parts.hostname}:{parts.port}", "", "", ""))
    return base, (parts.username or "", parts.password or "")


def vhost_of(url: str) -> str:
    """The virtual host an AMQP URL names (``t-1a2b3c4d`` for amqp://.../t-1a2b3c4d)."""
    return urlsplit(url).path.lstrip("/")


@contextmanager
def rabbit_vhost(services: Settings) -> Iterator[str]:
    """The AMQP URL of a fresh virtual host on the harness's RabbitMQ, deleted afterwards."""
    require(services.rabbitmq.url, "rabbitmq")
    require(services.rabbitmq.management_url, "rabbitmq management")
    base, auth = management(services)
    vhost = f"t-{secrets.token_hex(4)}"
    with httpx.Client(base_url=base, auth=auth, timeout=10) as api:
        api.put(f"/api/vhosts/{vhost}").raise_for_status()
        api.put(
            f"/api/permissions/{vhost}/{quote(auth[0], safe='')}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
        amqp = urlsplit(services.rabbitmq.url or "")
        try:
            yield urlunsplit((amqp.scheme, amqp.netloc, f"/{vhost}", "", ""))
        finally:
            api.delete(f"/api/vhosts/{vhost}")


def queue_info(services: Settings, broker: str, queue: str) -> dict[str, Any]:
    """RabbitMQ's management view of one queue of ``broker``'s virtual host."""
    base, auth = management(services)
    answer = httpx.get(
        f"{base}/api/queues/{quote(vhost_of(broker), safe='')}/{quote(queue, safe='')}", auth=auth, timeout=10
    )
    answer.raise_for_status()
    return answer.json()
