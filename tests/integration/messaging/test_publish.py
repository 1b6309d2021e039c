"""Publishing on a real RabbitMQ, a vhost per test: a publish returns once the broker has the
message, a nack and every refusal raise naming the cause, and nothing refused is enqueued."""

from __future__ import annotations

import threading
import time
from urllib.parse import quote

import httpx
import pytest

from controlplane.errors import Rejected, TooLarge, Unavailable
from controlplane.messaging.publisher import BrokerRefused, Publisher
from tests.support.messaging import declare_definition, depth, runtime_for, settings_for, take
from tests.support.processes import free_port
from tests.support.rabbitmq import management, queue_info, rabbit_vhost, vhost_of
from tests.support.timing import until

ORDERS = {
    "exchanges": [{"name": "shop", "type": "topic"}],
    "queues": [{"name": "orders"}, {"name": "tiny", "max_length": 1, "overflow": "reject-publish"}],
    "bindings": [{"exchange": "shop", "queue": "orders", "routing_key": "order.#"}],
}
SCHEMAS = [
    {
        "exchange": "shop",
        "routing_key": "order.created",
        "json_schema": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}},
    },
    {
        "exchange": "shop",
        "routing_key": "order.placed.*",
        "model": "tests.integration.messaging.schemas_models:Order",
    },
]


def field_of(exc: pytest.ExceptionInfo[Rejected]) -> str:
    return exc.value.errors[0]["field"]


def test_publish_returns_once_the_broker_has_the_message(services):
    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, ORDERS))
        with Publisher(runtime) as publisher:
            for n in range(20):
                publisher.publish("shop", "order.shipped", {"n": n})
                # Confirmed means queued: the broker's own count, read at once, already has it.
                assert depth(url, "orders") == n + 1
        until(
            "the management API to show 20", lambda: queue_info(services, url, "orders").get("messages") == 20
        )
        assert queue_info(services, url, "orders")["messages"] == 20


def test_a_nack_from_a_full_queue_is_refused_with_a_clear_error(services):
    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, ORDERS))
        with Publisher(runtime) as publisher:
            publisher.publish("", "tiny", {"first": True})
            with pytest.raises(BrokerRefused, match="refused the message \\(nack\\)"):
                publisher.publish("", "tiny", {"second": True})
            assert depth(url, "tiny") == 1
            # The channel is still good after a nack.
            publisher.publish("shop", "order.x", {"after": "nack"})
        assert [m.body for m in take(url, "tiny")] == [b'{"first":true}']


def test_refusals_name_the_field_and_enqueue_nothing(services):
    with rabbit_vhost(services) as url:
        settings = settings_for(services, url, ORDERS, schemas=SCHEMAS, max_body_bytes=1024)
        runtime = declare_definition(settings)
        with Publisher(runtime) as publisher:
            with pytest.raises(Rejected) as exc:
                publisher.publish("nowhere", "order.x", {})
            assert field_of(exc) == "exchange" and "not in the messaging definition" in str(exc.value)
            with pytest.raises(TooLarge) as exc:
                publisher.publish("shop", "order.x", {"pad": "x" * 1100})
            assert field_of(exc) == "body"
            for key in ("k" * 256, "order.*", "order.\n"):
                with pytest.raises(Rejected) as exc:
                    publisher.publish("shop", key, {})
                assert field_of(exc) == "routing_key", key
            with pytest.raises(Rejected) as exc:
                publisher.publish("shop", "payment.made", {"n": 1})
            assert field_of(exc) == "routing_key" and "no queue is bound" in str(exc.value)
            with pytest.raises(Rejected) as exc:
                publisher.publish("shop", "order.created", {"id": "seven"})
            assert field_of(exc) == "body.id"
            with pytest.raises(Rejected) as exc:
                publisher.publish(
                    "shop", "order.placed.eu", {"id": 7, "lines": [{"sku": "a", "quantity": 0}]}
                )
            assert field_of(exc) == "body.lines[0].quantity"
            with pytest.raises(Rejected) as exc:
                publisher.publish(
                    "shop", "order.created", b"\x00 not json", content_type="application/octet-stream"
                )
            assert field_of(exc) == "body"
            for option, value in (("priority", 256), ("expiration_ms", -1), ("message_id", "")):
                with pytest.raises(Rejected) as exc:
                    publisher.publish("shop", "order.x", {}, **{option: value})
                assert field_of(exc) == option
            with pytest.raises(TooLarge) as exc:
                publisher.publish("shop", "order.x", {}, headers={"big": "h" * 70000})
            assert field_of(exc) == "headers"
            assert depth(url, "orders") == 0
            # What passes its schemas goes through.
            publisher.publish("shop", "order.created", {"id": 7})
            publisher.publish("shop", "order.placed.eu", {"id": 7, "lines": [{"sku": "a", "quantity": 2}]})
            assert depth(url, "orders") == 2


def test_message_properties(services):
    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, ORDERS))
        with Publisher(runtime) as publisher:
            given = publisher.publish(
                "shop", "order.a", {"a": [1, "é"]}, message_id="order-7", headers={"tenant": "acme"},
                correlation_id="c-1",
            )  # fmt: skip
            generated = publisher.publish(
                "shop", "order.b", b"\x01\x02", content_type="application/octet-stream"
            )
        assert given == "order-7"
        assert len(generated) == 32 and int(generated, 16) >= 0
        first, second = take(url, "orders")
        assert first.body == '{"a":[1,"é"]}'.encode()
        assert first.properties["message_id"] == "order-7"
        assert first.properties["content_type"] == "application/json"
        assert first.properties["delivery_mode"] == 2
        assert first.properties["correlation_id"] == "c-1"
        assert first.headers == {"tenant": "acme"}
        assert abs(first.properties["timestamp"] - time.time()) < 60
        assert second.properties["message_id"] == generated
        assert second.body == b"\x01\x02" and second.properties["content_type"] == "application/octet-stream"


def test_threads_share_one_publisher(services):
    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, ORDERS))
        ids: list[str] = []
        with Publisher(runtime) as publisher:

            def send(worker: int) -> None:
                for n in range(50):
                    ids.append(publisher.publish("shop", f"order.{worker}", {"worker": worker, "n": n}))

            threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        assert len(ids) == len(set(ids)) == 200
        assert depth(url, "orders") == 200


def test_a_connection_closed_by_the_broker_is_reopened(services):
    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, ORDERS))
        base, auth = management(services)

        def connections() -> list[str]:
            found = httpx.get(f"{base}/api/vhosts/{vhost_of(url)}/connections", auth=auth, timeout=10).json()
            return [c["name"] for c in found]

        with Publisher(runtime) as publisher:
            publisher.publish("shop", "order.1", {"n": 1})
            (first,) = until("the publisher's connection to show", connections, 30)
            answer = httpx.delete(f"{base}/api/connections/{quote(first, safe='')}", auth=auth, timeout=10)
            assert answer.status_code == 204, answer.text
            # The broker's Close waits on the socket; the next publish reads it, reconnects
            # and sends again.
            for n in range(2, 52):
                publisher.publish("shop", "order.n", {"n": n})
            assert depth(url, "orders") == 51
            until("a new connection in place of the closed one", lambda: set(connections()) - {first}, 30)


def test_no_broker_is_unavailable_within_the_bound(services):
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    runtime = runtime_for(settings_for(services, dead, ORDERS, confirm_timeout_s=1.0))
    started = time.monotonic()
    with Publisher(runtime) as publisher, pytest.raises(Unavailable, match="cannot be reached"):
        publisher.publish("shop", "order.x", {})
    assert time.monotonic() - started < 10
