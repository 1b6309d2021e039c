"""The topology definition: parse refuses what RabbitMQ would refuse (or what would fight the
definition's own fields), naming the field; expand lists what the broker must hold."""

from __future__ import annotations

import pytest

from controlplane.errors import Rejected
from controlplane.messaging.definition import (
    DEAD_EXCHANGE,
    HEADER_ATTEMPT,
    expand,
    parse,
    retry_queue_name,
    source_queue,
)
from controlplane.settings import MessagingRetrySettings

DEFAULTS = MessagingRetrySettings(attempts=4, backoff_s=1.0, multiplier=2.0, backoff_max_s=3.0)


def refused_field(raw: object) -> str:
    with pytest.raises(Rejected) as refused:
        parse(raw)
    return refused.value.errors[0]["field"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"queues": [{"name": "a", "type": "quorum", "max_priority": 5}]}, "definition.queues[0]"),
        ({"queues": [{"name": "a", "max_priority": 300}]}, "definition.queues[0].max_priority"),
        ({"queues": [{"name": "bad name!"}]}, "definition.queues[0].name"),
        ({"queues": [{"name": "a", "colour": "red"}]}, "definition.queues[0].colour"),
        ({"exchanges": [{"name": "e", "type": "x-delayed"}]}, "definition.exchanges[0].type"),
        ({"exchanges": [{"name": "amq.topic"}]}, "definition.exchanges[0]"),
        ({"queues": [{"name": "a.dlq"}]}, "definition.queues[0]"),
        ({"queues": [{"name": "a", "arguments": {"x-max-priority": 3}}]}, "definition.queues[0]"),
        ({"queues": [{"name": "a"}, {"name": "a"}]}, "definition"),
        ({"bindings": [{"exchange": "nowhere", "queue": "q"}], "queues": [{"name": "q"}]}, "definition"),
        ({"queues": "orders"}, "definition.queues"),
    ],
)
def test_a_malformed_definition_is_refused_naming_the_field(raw, field):
    assert refused_field(raw) == field


def test_a_refusal_says_why():
    with pytest.raises(Rejected) as refused:
        parse({"queues": [{"name": "a", "type": "quorum", "max_priority": 5}]})
    assert "quorum queues on RabbitMQ 3.x have none" in str(refused.value)


def test_nothing_is_an_empty_definition():
    assert parse(None).queues == [] and parse({}).exchanges == []


def test_expand_gives_each_queue_its_dead_letter_and_retry_queues_in_declaring_order():
    definition = parse({
        "exchanges": [{"name": "orders", "type": "topic"}],
        "queues": [{"name": "orders.created", "type": "quorum", "retry": True, "overflow": "reject-publish"},
                   {"name": "audit", "dead_letter": False, "max_priority": 5, "message_ttl_ms": 60000}],
        "bindings": [{"exchange": "orders", "queue": "orders.created", "routing_key": "order.created.*"}],
    })  # fmt: skip
    items = expand(definition, DEFAULTS)
    by_name = {(d.kind, d.name): d for d in items}
    kinds = [d.kind for d in items]
    assert kinds == sorted(kinds, key=["exchange", "queue", "binding"].index)  # exchanges, queues, bindings
    assert ("exchange", DEAD_EXCHANGE) in by_name
    main = by_name[("queue", "orders.created")]
    assert main.arguments == {"x-queue-type": "quorum", "x-overflow": "reject-publish",
                              "x-dead-letter-exchange": DEAD_EXCHANGE,
                              "x-dead-letter-routing-key": "orders.created"}  # fmt: skip
    assert by_name[("queue", "orders.created.dlq")].arguments == {"x-queue-type": "quorum"}
    # 4 attempts: 3 retry queues, waiting 1, 2, then 3 s (the cap), each back to the queue.
    ttls = [
        by_name[("queue", retry_queue_name("orders.created", n))].arguments["x-message-ttl"]
        for n in (1, 2, 3)
    ]
    assert ttls == [1000, 2000, 3000]
    assert ("queue", retry_queue_name("orders.created", 4)) not in by_name
    back = by_name[("queue", "orders.created.retry.1")].arguments
    assert back["x-dead-letter-exchange"] == "" and back["x-dead-letter-routing-key"] == "orders.created"
    audit = by_name[("queue", "audit")].arguments
    assert audit == {"x-queue-type": "classic", "x-max-priority": 5, "x-message-ttl": 60000}
    assert ("queue", "audit.dlq") not in by_name
    bindings = [d for d in items if d.kind == "binding"]
    assert {(b.source, b.destination, b.routing_key) for b in bindings} == {
        (DEAD_EXCHANGE, "orders.created.dlq", "orders.created"),
        ("orders", "orders.created", "order.created.*"),
    }


def test_a_queue_of_its_own_retry_overrides_the_defaults():
    definition = parse({"queues": [{"name": "q", "retry": {"attempts": 2, "backoff_s": 0.25}}]})
    retries = [d for d in expand(definition, DEFAULTS) if ".retry." in d.name]
    assert [(d.name, d.arguments["x-message-ttl"]) for d in retries] == [("q.retry.1", 250)]


def test_a_bad_retry_names_its_field():
    definition = parse({"queues": [{"name": "q", "retry": {"attempts": 0}}]})
    with pytest.raises(Rejected) as refused:
        expand(definition, DEFAULTS)
    assert refused.value.errors[0]["field"] == "retry.attempts"


def test_source_queue_reads_the_names_coreplane_makes():
    assert source_queue("orders.dlq") == "orders"
    assert source_queue("orders.retry.3") == "orders"
    assert source_queue("orders") is None
    assert HEADER_ATTEMPT.startswith("x-coreplane-")
