"""Dead-letter tests' pieces: a definition with a dead-letter queue per queue, dead letters
put where the consumer helper puts them (Q.dlq, with the HEADER_* contract), and the whole
stack: a test's vhost, a `coreplane serve` archiving it, and a `coreplane agent` whose
rabbitmq target carries the vhost's AMQP URL.

    with dead_letter_stack(services, tmp_path) as stack:
        dead_letter(stack.url, "orders", b"{}", message_id="m-1")
        ...
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from amqp import Message

from controlplane.messaging import definition as d
from controlplane.messaging.connection import connect
from controlplane.settings import Settings
from tests.support.agents import spawn_agent
from tests.support.messaging import declare_definition, messaging_serving, settings_for
from tests.support.rabbitmq import rabbit_vhost
from tests.support.serve import ControlPlane
from tests.support.timing import until

# "orders" gets what the shop publishes; "short" lets a message live 100 ms, then RabbitMQ
# dead-letters it itself (reason expired).
DEFINITION = {
    "exchanges": [{"name": "shop", "type": "topic"}],
    "queues": [{"name": "orders"}, {"name": "short", "message_ttl_ms": 100}],
    "bindings": [
        {"exchange": "shop", "queue": "orders", "routing_key": "order.#"},
        {"exchange": "shop", "queue": "short", "routing_key": "short.#"},
    ],
}


def dead_letter(
    url: str,
    queue: str,
    body: bytes,
    *,
    message_id: str | None,
    error: str = "ValueError: boom",
    attempt: int = 4,
    reason: str = "failed",
    exchange: str = "shop",
    routing_key: str = "order.created",
    failed_at: str | None = None,
    headers: dict[str, Any] | None = None,
) -> None:
    """Put a dead letter in ``queue``'s Q.dlq as the consumer helper does after the last
    attempt: the message through the default exchange with coreplane's headers, confirmed."""
    contract = {
        d.HEADER_ATTEMPT: attempt,
        d.HEADER_QUEUE: queue,
        d.HEADER_EXCHANGE: exchange,
        d.HEADER_ROUTING_KEY: routing_key,
        d.HEADER_REASON: reason,
        d.HEADER_ERROR: error,
        d.HEADER_FAILED_AT: failed_at or datetime.now(UTC).isoformat(),
    }
    props = {"message_id": message_id} if message_id else {}
    message = Message(body, content_type="application/json", delivery_mode=2,
                      application_headers=contract | (headers or {}), **props)  # fmt: skip
    with connect(url, confirms=True) as conn:
        conn.default_channel.basic_publish(
            message, exchange="", routing_key=d.dlq_name(queue), mandatory=True
        )


def publish(url: str, exchange: str, routing_key: str, body: bytes, **props: Any) -> None:
    """A plain confirmed publish (an application's message)."""
    with connect(url, confirms=True) as conn:
        message = Message(body, delivery_mode=2, **props)
        conn.default_channel.basic_publish(
            message, exchange=exchange, routing_key=routing_key, mandatory=True
        )


@dataclass
class DeadLetterStack:
    cp: ControlPlane
    url: str  # the test's vhost
    settings: Settings

    def api(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=f"{self.cp.url}/api/v1", timeout=30,
                            headers={"Authorization": f"Bearer {token or self.cp.token}"})  # fmt: skip

    def archived(self, api: httpx.Client, count: int, **filters: str) -> list[dict]:
        """The archived dead letters matching ``filters`` once there are ``count`` of them."""

        def found() -> list[dict] | None:
            items = api.get("/messaging/dead-letters", params={"state": "any", **filters}).json()["items"]
            return items if len(items) >= count else None

        return until(f"{count} archived dead letter(s) {filters}", found, 30, 0.2,
                     logs=lambda: self.cp.log.read_text()[-3000:])  # fmt: skip


@contextmanager
def dead_letter_stack(
    services: Settings, tmp_path: Path, *, agent: bool = False, **messaging: Any
) -> Iterator[DeadLetterStack]:
    """A vhost with DEFINITION declared, a `coreplane serve` archiving its dead letters and
    (``agent``) a `coreplane agent` watching its RabbitMQ as the catalog service "rabbitmq"."""
    with rabbit_vhost(services) as url:
        settings = settings_for(services, url, DEFINITION, **messaging)
        declare_definition(settings)
        extra = {"messaging__archive_body_bytes": str(settings.messaging.archive_body_bytes)}
        with messaging_serving(settings, tmp_path, **extra) as cp:
            stack = DeadLetterStack(cp, url, settings)
            if not agent:
                yield stack
                return
            with watching_rabbitmq(cp, services, url, tmp_path):
                yield stack


@contextmanager
def watching_rabbitmq(cp: ControlPlane, services: Settings, url: str, tmp_path: Path) -> Iterator[None]:
    """A `coreplane agent` with a rabbitmq target (the management API; options.amqp_url the
    test's vhost), once the catalog shows the broker healthy with it."""
    work = tmp_path / "agent"
    work.mkdir()
    target = {"type": "rabbitmq", "name": "rabbitmq", "address": services.rabbitmq.management_url,
              "interval_s": 1, "options": {"amqp_url": url}}  # fmt: skip
    process = spawn_agent(cp.url, cp.token, "mq-agent", [target], work)
    try:
        api = httpx.Client(base_url=f"{cp.url}/api/v1", headers={"Authorization": f"Bearer {cp.token}"})

        def healthy() -> bool:
            assert process.poll() is None, "the agent exited"
            found = api.get("/services/rabbitmq")
            instances = found.json().get("instances", []) if found.status_code == 200 else []
            return any(i.get("health") == "passing" for i in instances)

        until("the agent to report RabbitMQ healthy", healthy, 60, 0.3)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
