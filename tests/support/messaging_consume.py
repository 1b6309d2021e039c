"""Raw publishes for the consumer tests, around controlplane.messaging (a message the
publisher would refuse). Settings, runtime, declaring, depth and take are
tests/support/messaging.py's."""

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
