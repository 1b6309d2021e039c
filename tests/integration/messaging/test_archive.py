"""The dead-letter archive against a real RabbitMQ and both store dialects: the library's
dead letters (HEADER_* contract) and RabbitMQ's own (an expired TTL) are stored with their
headers, capped body and reason, acked off the dead-letter queue, and outlive a purge;
the same dead letter delivered twice is one row; the thread in a serve archives live."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from controlplane.messaging import definition as d
from controlplane.messaging.archive import Archiver, dead_letter_row
from controlplane.messaging.connection import connect
from controlplane.store.models import MqDeadLetter
from tests.support.messaging import declare_definition, depth, settings_for
from tests.support.messaging_dead import DEFINITION, dead_letter, publish
from tests.support.rabbitmq import rabbit_vhost, vhost_of
from tests.support.timing import until

KEEP = 1024


@dataclass
class _Delivery:
    """What the archive reads of a message, for rows written without a broker."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)


def _rows(store) -> list[MqDeadLetter]:
    with store.sessions() as session:
        return list(session.scalars(select(MqDeadLetter).order_by(MqDeadLetter.queue)))


def test_library_and_broker_dead_letters_are_archived_and_outlive_a_purge(store, services):
    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, DEFINITION, archive_body_bytes=KEEP))
        big = b'{"order": "' + b"x" * 3000 + b'", "nul": "\\u0000"}'
        dead_letter(url, "orders", big, message_id="order-1", error="ValueError: no stock",
                    headers={"blob": b"\x00\xff", "nested": {"n": 1}})  # fmt: skip
        publish(url, "shop", "short.lived", b"\xde\xad\xbe\xef", message_id="short-1", priority=3)
        until("RabbitMQ to expire the short-lived message", lambda: depth(url, "short.dlq") == 1, 20, 0.1)

        archived = Archiver(store.engine, runtime).run_once(idle_s=0.5)

        assert archived == 2
        assert depth(url, "orders.dlq") == 0 and depth(url, "short.dlq") == 0  # acked after the commit
        with connect(url) as conn:  # the dead-letter queues purged: the archive keeps them
            conn.default_channel.queue_purge("orders.dlq")
        failed, expired = _rows(store)
        assert (failed.queue, failed.reason, failed.error, failed.attempts) == (
            "orders", "failed", "ValueError: no stock", 4)  # fmt: skip
        assert (failed.exchange, failed.routing_key, failed.message_id) == (
            "shop",
            "order.created",
            "order-1",
        )
        assert failed.vhost == vhost_of(url) and failed.state == "dead"
        assert failed.truncated and failed.body_bytes == len(big) and bytes(failed.body) == big[:KEEP]
        assert failed.headers[d.HEADER_ERROR] == "ValueError: no stock"
        assert failed.headers["blob"] == "base64:" + base64.b64encode(b"\x00\xff").decode()
        assert failed.headers["nested"] == {"n": 1}
        assert failed.content_type == "application/json"

        assert (expired.queue, expired.reason, expired.error) == ("short", "expired", None)
        assert (expired.exchange, expired.routing_key, expired.message_id) == (
            "shop",
            "short.lived",
            "short-1",
        )
        assert not expired.truncated and bytes(expired.body) == b"\xde\xad\xbe\xef"
        assert expired.properties["priority"] == 3
        (death,) = expired.headers["x-death"]
        assert death["reason"] == "expired" and death["queue"] == "short" and isinstance(death["time"], str)


def test_the_same_dead_letter_delivered_twice_is_one_row(store, services):
    """A crash between the commit and the ack redelivers what was stored: the fingerprint
    (vhost, queue, message id, the death's time and attempt) makes it one row."""
    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, DEFINITION))
        same = {"message_id": "twice", "failed_at": "2026-11-29T10:00:00.123456+00:00"}
        dead_letter(url, "orders", b"{}", **same)
        dead_letter(url, "orders", b"{}", **same)  # beside its first copy, in one batch
        archiver = Archiver(store.engine, runtime)
        assert archiver.run_once(idle_s=0.5) == 1
        dead_letter(url, "orders", b"{}", **same)  # after the first was committed
        assert archiver.run_once(idle_s=0.5) == 0
        # Another death of the same message (a later attempt) is a row of its own.
        dead_letter(url, "orders", b"{}", message_id="twice", failed_at="2026-11-29T10:05:00+00:00")
        assert archiver.run_once(idle_s=0.5) == 1
        assert depth(url, "orders.dlq") == 0
        assert [r.message_id for r in _rows(store)] == ["twice", "twice"]


def test_a_serve_archives_dead_letters_as_they_come(tmp_path, services):
    """The thread `coreplane serve` runs: a dead letter is in the API within seconds."""
    from tests.support.messaging_dead import dead_letter_stack

    with dead_letter_stack(services, tmp_path) as stack, stack.api() as api:
        message_id = f"live-{uuid.uuid4().hex[:8]}"
        dead_letter(stack.url, "orders", b'{"live": true}', message_id=message_id)
        (row,) = stack.archived(api, 1, q=message_id)
        assert (row["queue"], row["reason"], row["message_id"]) == ("orders", "failed", message_id)
        until("the dead-letter queue to be acked empty", lambda: depth(stack.url, "orders.dlq") == 0, 10, 0.1)


def test_store_maintenance_drops_dead_letters_older_than_dead_days(store):
    from datetime import timedelta

    from controlplane.clock import utcnow
    from controlplane.loops.store_maintenance import StoreMaintenance
    from controlplane.messaging.archive import store_rows
    from controlplane.settings import MessagingSettings, RetentionSettings

    now = utcnow()
    rows = []
    for age_days in (0.5, 3):
        message = _Delivery(b"{}", {d.HEADER_REASON: "failed",
                                    d.HEADER_FAILED_AT: (now - timedelta(days=age_days)).isoformat() + "Z"})  # fmt: skip
        rows.append(dead_letter_row(message, vhost="/", queue="orders", keep_bytes=100))
    with store.sessions.begin() as session:
        assert store_rows(session, rows) == 2
    StoreMaintenance(store.engine, RetentionSettings(), messaging=MessagingSettings(dead_days=1)).run_once(
        now
    )
    (kept,) = _rows(store)
    assert kept.dead_at > now - timedelta(days=1)


def test_the_consumer_helpers_dead_letters_are_archived_with_its_verdict(store, services):
    """The contract between the consumer helper and the archive: a poison message retried to
    its last attempt, and a Reject, come out as rows saying why, with the handler's error."""
    from controlplane.messaging.consumer import Consumer, Reject

    definition = {**DEFINITION, "queues": [{"name": "orders", "retry": {"attempts": 2, "backoff_s": 0.05}}]}
    definition["bindings"] = [b for b in DEFINITION["bindings"] if b["queue"] == "orders"]
    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, definition))
        publish(url, "shop", "order.created", b'{"poison": true}', message_id="poison-1")
        publish(url, "shop", "order.refused", b'{"refused": true}', message_id="refused-1")

        def handler(delivery) -> None:
            if delivery.routing_key == "order.refused":
                raise Reject("nobody wants it")
            raise KeyError("sku")

        consumer = Consumer(runtime, "orders", handler)
        until("both messages in orders.dlq", lambda: consumer.drain(max_messages=10, timeout_s=0.5) >= 0
              and depth(url, "orders.dlq") == 2, 20, 0.05)  # fmt: skip
        assert Archiver(store.engine, runtime).run_once(idle_s=0.5) == 2
        rows = {r.message_id: r for r in _rows(store)}
        poison, refused = rows["poison-1"], rows["refused-1"]
        assert (poison.reason, poison.attempts, poison.routing_key, poison.exchange) == (
            "failed", 2, "order.created", "shop")  # fmt: skip
        assert "KeyError" in poison.error and bytes(poison.body) == b'{"poison": true}'
        assert (refused.reason, refused.routing_key) == ("rejected", "order.refused")
        assert "nobody wants it" in refused.error


def test_a_dead_letter_kombu_serialized_as_json_is_archived_with_its_bytes(store, services):
    """kombu's JSON serializer names a content_encoding, so py-amqp hands the archiver a str
    body: it is stored as the bytes that were sent, not refused."""
    from kombu import Producer

    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, DEFINITION))
        with connect(url) as conn:
            Producer(conn.default_channel).publish(
                {"order": "é-1"}, exchange="", routing_key="orders.dlq", serializer="json",
                message_id="kombu-json", headers={d.HEADER_REASON: "failed", d.HEADER_QUEUE: "orders"},
            )  # fmt: skip
        assert Archiver(store.engine, runtime).run_once(idle_s=0.5) == 1
        (row,) = _rows(store)
        assert row.message_id == "kombu-json" and row.reason == "failed"
        assert json.loads(bytes(row.body)) == {"order": "é-1"}
        assert row.body_bytes == len(bytes(row.body)) and not row.truncated
