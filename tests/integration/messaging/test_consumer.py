"""The consumer helper on the harness's RabbitMQ, a virtual host per test: acks after the
handler, Reject to the DLQ at once, Requeue redelivers, invalid bodies never reach the
handler, prefetch bounds what a consumer holds unacked."""

from __future__ import annotations

import threading

import pytest

from controlplane.errors import NotFound, Rejected
from controlplane.messaging import definition as defn
from controlplane.messaging.consumer import Consumer, Delivery, Reject, Requeue
from tests.support.messaging import declare_definition, depth, runtime_for, settings_for, take
from tests.support.messaging_consume import publish_raw
from tests.support.rabbitmq import queue_info, rabbit_vhost
from tests.support.timing import until

WORK = {
    "exchanges": [{"name": "orders", "type": "topic"}],
    "queues": [{"name": "work", "type": "quorum"}, {"name": "loose", "dead_letter": False}],
    "bindings": [
        {"exchange": "orders", "queue": "work", "routing_key": "order.*"},
        {"exchange": "orders", "queue": "loose", "routing_key": "loose.*"},
    ],
}
ORDER_SCHEMA = [
    {
        "exchange": "orders",
        "routing_key": "order.*",
        "json_schema": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}},
    }
]


@pytest.fixture
def broker(services):
    with rabbit_vhost(services) as url:
        yield declare_definition(settings_for(services, url, WORK, schemas=ORDER_SCHEMA))


def stats_settled(services, url: str, queue: str) -> None:
    """Until the management view shows nothing waiting and nothing unacked (its statistics
    lag the queue by a few seconds)."""

    def settled() -> bool:
        info = queue_info(services, url, queue)
        return info.get("messages") == 0 and info.get("messages_unacknowledged") == 0

    until(f"{queue} empty and nothing unacked in the management stats", settled, timeout_s=20, every_s=0.5)


def test_a_handler_that_returns_acks_and_gets_the_decoded_delivery(services, broker):
    ids = [publish_raw(broker.url, "orders", "order.created", {"id": n}) for n in range(3)]
    seen: list[Delivery] = []
    settled = Consumer(broker, "work", seen.append).drain(max_messages=3, timeout_s=10)
    assert settled == 3
    assert [d.body for d in seen] == [{"id": 0}, {"id": 1}, {"id": 2}]
    assert [d.message_id for d in seen] == ids
    first = seen[0]
    assert (first.exchange, first.routing_key, first.attempt, first.redelivered) == (
        "orders", "order.created", 1, False,
    )  # fmt: skip
    assert depth(broker.url, "work") == 0
    stats_settled(services, broker.url, "work")
    assert depth(broker.url, "work.dlq") == 0


def test_a_body_that_is_not_json_is_handed_over_as_bytes(broker):
    publish_raw(broker.url, "orders", "loose.bin", b"\x00\x01", content_type="application/octet-stream")
    seen: list[Delivery] = []
    assert Consumer(broker, "loose", seen.append).drain(max_messages=1, timeout_s=10) == 1
    assert seen[0].body == b"\x00\x01"


def test_reject_dead_letters_at_once_with_the_reason(broker):
    message_id = publish_raw(broker.url, "orders", "order.created", {"id": 7})

    def handler(delivery: Delivery) -> None:
        raise Reject("customer 7 is closed")

    assert Consumer(broker, "work", handler).drain(max_messages=1, timeout_s=10) == 1
    dead = take(broker.url, "work.dlq")
    assert len(dead) == 1
    headers = dead[0].headers
    assert dead[0].properties["message_id"] == message_id
    assert headers[defn.HEADER_REASON] == "rejected"
    assert headers[defn.HEADER_ERROR] == "Reject: customer 7 is closed"
    assert (headers[defn.HEADER_QUEUE], headers[defn.HEADER_ATTEMPT]) == ("work", 1)
    assert (headers[defn.HEADER_EXCHANGE], headers[defn.HEADER_ROUTING_KEY]) == ("orders", "order.created")
    assert headers[defn.HEADER_FAILED_AT].endswith("+00:00")
    assert dead[0].body == b'{"id": 7}'
    assert depth(broker.url, "work") == 0


def test_requeue_puts_the_message_back_and_it_comes_again_redelivered(broker):
    message_id = publish_raw(broker.url, "orders", "order.created", {"id": 1})
    seen: list[Delivery] = []

    def handler(delivery: Delivery) -> None:
        seen.append(delivery)
        if len(seen) == 1:
            raise Requeue()

    assert Consumer(broker, "work", handler).drain(max_messages=2, timeout_s=10) == 2
    assert [(d.message_id, d.redelivered, d.attempt) for d in seen] == [
        (message_id, False, 1),
        (message_id, True, 1),
    ]
    assert depth(broker.url, "work") == 0
    assert depth(broker.url, "work.dlq") == 0


def test_an_invalid_message_is_dead_lettered_with_the_field_and_never_handled(broker):
    bad_field = publish_raw(broker.url, "orders", "order.created", {"id": "seven"})
    not_json = publish_raw(broker.url, "orders", "order.created", b"{not json")
    seen: list[Delivery] = []
    assert Consumer(broker, "work", seen.append).drain(max_messages=2, timeout_s=10) == 2
    assert seen == []
    dead = {m.properties["message_id"]: m.headers for m in take(broker.url, "work.dlq")}
    assert set(dead) == {bad_field, not_json}
    assert {h[defn.HEADER_REASON] for h in dead.values()} == {"invalid"}
    assert dead[bad_field][defn.HEADER_ERROR].startswith("body.id: 'seven' is not of type 'integer'")
    assert dead[not_json][defn.HEADER_ERROR].startswith("body: not valid JSON")


def test_a_queue_without_dead_letter_drops_a_rejected_message(broker):
    publish_raw(broker.url, "orders", "loose.x", {"n": 1})

    def handler(delivery: Delivery) -> None:
        raise Reject("no")

    assert Consumer(broker, "loose", handler).drain(max_messages=1, timeout_s=10) == 1
    assert depth(broker.url, "loose") == 0


def test_prefetch_bounds_the_unacked_messages_while_the_handler_blocks(services, broker):
    for n in range(10):
        publish_raw(broker.url, "orders", "order.created", {"id": n})
    release, handled = threading.Event(), []

    def handler(delivery: Delivery) -> None:
        release.wait(60)
        handled.append(delivery.body["id"])

    consumer = Consumer(broker, "work", handler, prefetch=3)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    unacked_seen: list[int] = []
    try:

        def unacked_at_prefetch() -> bool:
            info = queue_info(services, broker.url, "work")
            unacked_seen.append(info.get("messages_unacknowledged", 0))
            return unacked_seen[-1] == 3 and info.get("messages_ready") == 7

        until("the broker to show 3 unacked and 7 ready", unacked_at_prefetch, timeout_s=20, every_s=0.25)
        assert max(unacked_seen) <= 3, f"unacked counts seen: {unacked_seen}"
        assert handled == []
        release.set()
        until("all 10 handled", lambda: len(handled) == 10, timeout_s=20)
    finally:
        release.set()
        stop.set()
        thread.join(10)
    assert sorted(handled) == list(range(10))
    stats_settled(services, broker.url, "work")


def test_a_queue_outside_the_definition_is_refused_and_a_missing_one_is_not_found(broker):
    with pytest.raises(Rejected) as refused:
        Consumer(broker, "elsewhere", print)
    assert refused.value.errors[0]["field"] == "queue"
    with pytest.raises(Rejected) as refused:
        Consumer(broker, "work", print, prefetch=0)
    assert refused.value.errors[0]["field"] == "prefetch"
    gone = runtime_for(settings_for(broker.settings, broker.url, {"queues": [{"name": "never-declared"}]}))
    with pytest.raises(NotFound):
        Consumer(gone, "never-declared", print).drain(max_messages=1, timeout_s=2)
