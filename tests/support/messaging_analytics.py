"""Part D's test pieces: messages published with plain kombu (a timestamp property, so
RabbitMQ reports the head message's age), and the real app in-process on a migrated store
with messaging on a test's vhost (archiving off unless asked: the archiver would drain the
DLQs these tests count)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from controlplane.app import create_app
from controlplane.messaging import definition as d
from controlplane.messaging.connection import connect
from controlplane.settings import Settings
from tests.support.stores import ADMIN, Store, make_settings


def publish(url: str, queue: str, count: int, *, timestamp: int | None = None) -> None:
    """``count`` persistent messages to ``queue`` through the default exchange, confirmed."""
    with connect(url) as conn:
        producer = conn.Producer()
        for i in range(count):
            extra: dict[str, Any] = {"timestamp": timestamp} if timestamp is not None else {}
            producer.publish({"i": i}, exchange="", routing_key=queue, delivery_mode=2, **extra)


def app_settings(store: Store, services: Settings, messaging: Settings, **update: Any) -> Settings:
    """Settings of an in-process app on ``store`` with ``messaging``'s messaging (archive
    off unless ``update`` says otherwise), the harness's RabbitMQ management API and S3."""
    found = messaging.messaging.model_copy(update={"archive": False, **update})
    return make_settings(store, rabbitmq=services.rabbitmq, s3=services.s3, messaging=found)


@contextmanager
def app_client(settings: Settings, token: str = ADMIN) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def token_of(client: TestClient, role: str) -> str:
    answer = client.post("/api/v1/tokens", json={"name": f"{role}-mq", "role": role})
    answer.raise_for_status()
    return answer.json()["token"]


def publish_dead_letter(url: str, queue: str) -> None:
    """What the consumer helper publishes to ``queue``.dlq when a message failed its last
    attempt (a raw JSON body, so it reads back as bytes)."""
    headers = {d.HEADER_QUEUE: queue, d.HEADER_REASON: "failed", d.HEADER_ATTEMPT: 2,
               d.HEADER_EXCHANGE: "", d.HEADER_ROUTING_KEY: queue, d.HEADER_ERROR: "ValueError: bad",
               d.HEADER_FAILED_AT: datetime.now(UTC).isoformat()}  # fmt: skip
    with connect(url) as conn:
        conn.Producer().publish(
            b'{"id": 7}', exchange="", routing_key=d.dlq_name(queue), headers=headers,
            content_type="application/json", content_encoding="binary",
        )  # fmt: skip


ESTATE_DEFINITION = {"queues": [{"name": "obs.orders"}]}


@contextmanager
def messaging_estate(services: Settings) -> Iterator[dict[str, str]]:
    """A vhost with obs.orders holding two messages and one dead letter in obs.orders.dlq, for
    an estate whose dashboards must show messaging figures; yields the serve's variables."""
    from tests.support.messaging import declare_definition, settings_for
    from tests.support.rabbitmq import rabbit_vhost

    with rabbit_vhost(services) as url:
        declare_definition(settings_for(services, url, ESTATE_DEFINITION))
        publish(url, "obs.orders", 2, timestamp=int(time.time()))
        publish_dead_letter(url, "obs.orders")
        yield {
            "COREPLANE_MESSAGING__URL": url,
            "COREPLANE_MESSAGING__DEFINITION": json.dumps(ESTATE_DEFINITION),
        }
