"""Retries through the TTL retry queues, measured: a poison message is tried N times with
the backoff between tries (never sooner than each retry queue's TTL), then dead-lettered
with reason failed, the attempts and the error."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from controlplane.messaging import definition as defn
from controlplane.messaging.consumer import Consumer, Delivery, Retry
from tests.support.messaging import declare_definition, depth, settings_for, take
from tests.support.messaging_consume import publish_raw
from tests.support.rabbitmq import rabbit_vhost
from tests.support.timing import until

ATTEMPTS, BACKOFF_S, MULTIPLIER = 4, 0.4, 2.0
# The broker expires a queue's head on a timer and moves it back through the dead-letter
# exchange: later than the TTL by a little, or by more on a loaded machine, never sooner.
EARLY_TOLERANCE_S = 0.005
LATE_TOLERANCE_S = 1.5
DEFINITION = {
    "exchanges": [{"name": "jobs", "type": "direct"}],
    "queues": [
        {
            "name": "poison",
            "type": "quorum",
            "retry": {"attempts": ATTEMPTS, "backoff_s": BACKOFF_S, "multiplier": MULTIPLIER},
        },
        {"name": "once"},
    ],
    "bindings": [
        {"exchange": "jobs", "queue": "poison", "routing_key": "poison"},
        {"exchange": "jobs", "queue": "once", "routing_key": "once"},
    ],
}


@pytest.fixture
def broker(services):
    with rabbit_vhost(services) as url:
        yield declare_definition(settings_for(services, url, DEFINITION))


def test_a_poison_message_is_retried_with_the_backoff_then_dead_lettered(broker):
    message_id = publish_raw(broker.url, "jobs", "poison", {"job": 1})
    tries: list[tuple[int, float, bool]] = []

    def handler(delivery: Delivery) -> None:
        tries.append((delivery.attempt, time.monotonic(), delivery.redelivered))
        assert (delivery.exchange, delivery.routing_key) == ("jobs", "poison")
        raise ValueError(f"cannot process job {delivery.body['job']}")

    stop = threading.Event()
    thread = threading.Thread(target=Consumer(broker, "poison", handler).run, args=(stop,), daemon=True)
    thread.start()
    try:
        until(
            "the DLQ to hold the poison message", lambda: depth(broker.url, "poison.dlq") == 1, timeout_s=30
        )
    finally:
        stop.set()
        thread.join(10)
    assert [attempt for attempt, _, _ in tries] == list(range(1, ATTEMPTS + 1))
    assert not any(redelivered for _, _, redelivered in tries), "a retry is a new message, not a redelivery"
    gaps = [round(b - a, 3) for (_, a, _), (_, b, _) in itertools.pairwise(tries)]
    print(f"retry gaps (s): {gaps}")
    for n, gap in enumerate(gaps, start=1):
        wanted = BACKOFF_S * MULTIPLIER ** (n - 1)
        assert wanted - EARLY_TOLERANCE_S <= gap <= wanted + LATE_TOLERANCE_S, (
            f"retry {n} came {gap} s after the try before it, wanted {wanted} s; all gaps {gaps}"
        )
    (dead,) = take(broker.url, "poison.dlq")
    headers = dead.headers
    assert dead.properties["message_id"] == message_id
    assert headers[defn.HEADER_REASON] == "failed"
    assert headers[defn.HEADER_ATTEMPT] == ATTEMPTS
    assert headers[defn.HEADER_ERROR] == "ValueError: cannot process job 1"
    assert (headers[defn.HEADER_QUEUE], headers[defn.HEADER_EXCHANGE], headers[defn.HEADER_ROUTING_KEY]) == (
        "poison", "jobs", "poison",
    )  # fmt: skip
    assert dead.body == b'{"job": 1}'
    for n in range(1, ATTEMPTS):
        assert depth(broker.url, defn.retry_queue_name("poison", n)) == 0
    assert depth(broker.url, "poison") == 0


def test_retry_raised_by_the_handler_then_success_acks_on_the_next_attempt(broker):
    publish_raw(broker.url, "jobs", "poison", {"job": 2})
    attempts: list[int] = []

    def handler(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if delivery.attempt == 1:
            raise Retry("the gateway is busy")

    consumer = Consumer(broker, "poison", handler)
    assert consumer.drain(max_messages=2, timeout_s=15) == 2
    assert attempts == [1, 2]
    assert depth(broker.url, "poison.dlq") == 0
    assert depth(broker.url, "poison") == 0


def test_an_error_message_is_capped(broker):
    publish_raw(broker.url, "jobs", "once", {"job": 3})

    def handler(delivery: Delivery) -> None:
        raise RuntimeError("x" * 5000)

    assert Consumer(broker, "once", handler).drain(max_messages=1, timeout_s=10) == 1
    (dead,) = take(broker.url, "once.dlq")
    error = dead.headers[defn.HEADER_ERROR]
    assert len(error) == defn.ERROR_MAX and error.startswith("RuntimeError: xxx")


def test_a_queue_without_retry_dead_letters_the_first_failure(broker):
    publish_raw(broker.url, "jobs", "once", {"job": 4})
    calls: list[int] = []

    def handler(delivery: Delivery) -> None:
        calls.append(delivery.attempt)
        raise KeyError("missing")

    assert Consumer(broker, "once", handler).drain(max_messages=1, timeout_s=10) == 1
    assert calls == [1]
    (dead,) = take(broker.url, "once.dlq")
    assert (dead.headers[defn.HEADER_REASON], dead.headers[defn.HEADER_ATTEMPT]) == ("failed", 1)
    assert dead.headers[defn.HEADER_ERROR] == "KeyError: 'missing'"
