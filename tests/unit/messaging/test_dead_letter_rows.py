"""The archive's reading of one dead letter, and the dead-letter actions' parameter checks:
pure logic, no broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from controlplane.errors import Rejected
from controlplane.messaging import dead
from controlplane.messaging import definition as d
from controlplane.messaging.archive import _json_safe, dead_letter_row


@dataclass
class FakeDelivery:
    """The three attributes the archive reads of a kombu message (a plain record, not a
    broker stand-in: nothing here talks to RabbitMQ)."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)


DEATH = {"queue": "orders", "reason": "rejected", "count": 2, "time": datetime(2026, 11, 29, 10, 0, 0),
         "exchange": "shop", "routing-keys": ["order.created"]}  # fmt: skip


def _row(message: FakeDelivery, keep: int = 100) -> dict:
    return dead_letter_row(message, vhost="/", queue="orders", keep_bytes=keep)


def test_a_broker_dead_letter_takes_its_reason_and_origin_from_x_death():
    expiry = {**DEATH, "queue": "orders.retry.1", "reason": "expired"}  # a retry queue's, newer
    row = _row(FakeDelivery(b"{}", {"x-death": [expiry, DEATH]}, {"message_id": "m"}))
    assert (row["reason"], row["exchange"], row["routing_key"], row["attempts"]) == (
        "rejected", "shop", "order.created", 2)  # fmt: skip
    assert row["dead_at"] == datetime(2026, 11, 29, 10, 0, 0)


def test_coreplane_headers_win_over_x_death():
    headers = {"x-death": [DEATH], d.HEADER_REASON: "invalid", d.HEADER_ERROR: "body.sku: required",
               d.HEADER_ATTEMPT: 1, d.HEADER_EXCHANGE: "", d.HEADER_ROUTING_KEY: "orders",
               d.HEADER_FAILED_AT: "2026-11-29T11:00:00Z"}  # fmt: skip
    row = _row(FakeDelivery(b"{}", headers))
    assert (row["reason"], row["error"], row["attempts"], row["exchange"]) == (
        "invalid",
        "body.sku: required",
        1,
        "",
    )
    assert row["dead_at"] == datetime(2026, 11, 29, 11, 0, 0)


def test_the_body_is_capped_and_the_fingerprint_is_stable():
    message = FakeDelivery(
        b"a" * 150, {d.HEADER_REASON: "failed", d.HEADER_FAILED_AT: "2026-11-29T11:00:00Z"}
    )
    first, again = _row(message), _row(message)
    assert first["truncated"] and first["body_bytes"] == 150 and len(first["body"]) == 100
    assert first["fingerprint"] == again["fingerprint"] and first["id"] != again["id"]
    later = FakeDelivery(message.body, {**message.headers, d.HEADER_FAILED_AT: "2026-11-29T11:00:01Z"})
    replayed = FakeDelivery(message.body, {**message.headers, dead.REPLAYED_HEADER: 1})
    assert len({first["fingerprint"], _row(later)["fingerprint"], _row(replayed)["fingerprint"]}) == 3


def test_headers_become_json_the_store_keeps():
    safe = _json_safe({"b": b"\x00\x01", "t": datetime(2026, 1, 1), "s": "a\x00b" + "x" * 5000,
                       "deep": [[[[[[[[1]]]]]]]], "nan": float("nan")})  # fmt: skip
    assert safe["b"] == "base64:AAE=" and safe["t"] == "2026-01-01T00:00:00"
    assert "\x00" not in safe["s"] and len(safe["s"]) == 2000
    assert "..." in str(safe["deep"]) and safe["nan"] == "nan"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "params.ids"),
        ({"ids": [], "queue": "q"}, "params.ids"),
        ({"ids": ["x"]}, "params.ids"),
        ({"queue": "a b"}, "params.queue"),
        ({"queue": "q", "reason": "bored"}, "params.reason"),
        ({"queue": "q", "since": "soon"}, "params.since"),
        ({"queue": "q", "limit": 0}, "params.limit"),
        ({"queue": "q", "limit": True}, "params.limit"),
    ],
)
def test_replay_params_are_refused_naming_the_field(params, field):
    with pytest.raises(Rejected) as refused:
        dead.check_replay(params)
    assert refused.value.errors[0]["field"] == field


def test_a_large_replay_is_split_into_steps_of_a_few_megabytes():
    messages = [{"id": str(i), "body": "x" * (dead.STEP_BYTES // 3)} for i in range(7)]
    steps = dead._chunks(messages)
    assert [len(s) for s in steps] == [3, 3, 1]
    assert dead._chunks([{"id": "big", "body": "x" * (dead.STEP_BYTES * 2)}]) == [
        [{"id": "big", "body": "x" * (dead.STEP_BYTES * 2)}]
    ]
