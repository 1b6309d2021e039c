"""Priorities, TTLs and length limits on a real RabbitMQ: a backlog is reordered by priority,
expired and overflowed messages go to the queue's Q.dlq with RabbitMQ's reason in x-death."""

from __future__ import annotations

import json

import pytest

from controlplane.messaging.publisher import Publisher
from tests.support.messaging import declare_definition, depth, settings_for, take
from tests.support.rabbitmq import rabbit_vhost
from tests.support.timing import until


def reasons(messages: list) -> list[str]:
    return [m.headers["x-death"][0]["reason"] for m in messages]


def bodies(messages: list) -> list:
    return [json.loads(m.body) for m in messages]


def test_priorities_reorder_a_backlog(services):
    definition = {"queues": [{"name": "jobs", "max_priority": 10}]}
    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, definition))
        with Publisher(runtime) as publisher:
            for n in range(30):
                publisher.publish("", "jobs", {"level": "low", "n": n}, priority=1)
            for n in range(30):
                publisher.publish("", "jobs", {"level": "high", "n": n}, priority=9)
        got = bodies(take(url, "jobs"))
    assert [m["level"] for m in got] == ["high"] * 30 + ["low"] * 30
    # Within one priority the order stays first in, first out.
    assert [m["n"] for m in got[:30]] == list(range(30)) == [m["n"] for m in got[30:]]


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_a_per_message_ttl_expires_into_the_dead_letter_queue(services, queue_type):
    definition = {"queues": [{"name": "q", "type": queue_type}]}
    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, definition))
        with Publisher(runtime) as publisher:
            publisher.publish("", "q", {"short": True}, expiration_ms=50)
            publisher.publish("", "q", {"kept": True})
        dead = until("the expired message in q.dlq", lambda: take(url, "q.dlq"), timeout_s=20)
        assert bodies(dead) == [{"short": True}]
        assert reasons(dead) == ["expired"]
        assert dead[0].headers["x-death"][0]["queue"] == "q"
        assert bodies(take(url, "q")) == [{"kept": True}]


def test_a_per_queue_ttl_expires_every_message(services):
    definition = {"queues": [{"name": "q", "message_ttl_ms": 100}]}
    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, definition))
        with Publisher(runtime) as publisher:
            for n in range(3):
                publisher.publish("", "q", {"n": n})
        until("all three in q.dlq", lambda: depth(url, "q.dlq") == 3)
        dead = take(url, "q.dlq")
        assert bodies(dead) == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert reasons(dead) == ["expired"] * 3
        assert depth(url, "q") == 0


def test_max_length_with_drop_head_keeps_the_newest(services):
    definition = {"queues": [{"name": "q", "max_length": 3, "overflow": "drop-head"}]}
    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, definition))
        with Publisher(runtime) as publisher:
            for n in range(5):
                publisher.publish("", "q", {"n": n})
        assert bodies(take(url, "q")) == [{"n": 2}, {"n": 3}, {"n": 4}]
        until("the two dropped in q.dlq", lambda: depth(url, "q.dlq") == 2)
        dead = take(url, "q.dlq")
        assert bodies(dead) == [{"n": 0}, {"n": 1}]
        assert reasons(dead) == ["maxlen"] * 2
