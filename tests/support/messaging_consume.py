"""Helpers for the consumer tests: raw publishes and gets that go around
controlplane.messaging (a message the publisher would refuse, a look at a dead-letter queue).
Settings, runtime and declaring are tests/support/messaging.py's."""

from __future__ import annotations

import json
import uuid
from typing import Any

from controlplane.messaging.connection import connect


def publish_raw(url: str, exchange: str, routing_key: str, body: Any, *, message_id: str | None = None,
                content_type: str = "application/json", headers: dict | None = None) -> str:  # fmt: skip
    """A persistent, confirmed, mandatory publish through kombu alone; the message id."""
    message_id = message_id or uuid.uuid4().hex
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with connect(url, confirms=True) as conn:
        channel = conn.channel()
        message = channel.prepare_message(raw, content_type=content_type, content_encoding="utf-8",
                                          headers=headers or {},
                                          properties={"message_id": message_id, "delivery_mode": 2})  # fmt: skip
        channel.basic_publish(message, exchange=exchange, routing_key=routing_key, mandatory=True)
    return message_id


def get_all(url: str, queue: str, limit: int = 1000) -> list[Any]:
    """Take (and ack) what waits in ``queue`` now, up to ``limit`` messages, bodies as bytes."""
    taken = []
    with connect(url) as conn:
        channel = conn.channel()
        for _ in range(limit):
            message = channel.basic_get(queue, no_ack=True)
            if message is None:
                break
            if isinstance(message.body, str):  # py-amqp decodes a body that names its encoding
                message.body = message.body.encode(message.content_encoding or "utf-8")
            taken.append(message)
    return taken


def depth(url: str, queue: str) -> int:
    """Ready messages in ``queue`` now (a passive declare: exact, unlike the management stats)."""
    with connect(url) as conn:
        return conn.channel().queue_declare(queue, passive=True).message_count
