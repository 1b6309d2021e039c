"""What an agent does with a 409 naming reports on other agents' instances (issue 12,
finding 3 follow-up): which refusals it splits on, what it keeps, under which id."""

from __future__ import annotations

import gzip
import json

from agents.client import Refused
from agents.runtime import MAX_BATCH_ID, Buffer, Disowned, not_owner, resent_id, without_refused
from agents.spool import Spool


def _health(service: str, instance: str) -> dict:
    return {"event_type": "health", "service_name": service, "timestamp": "2026-01-01T00:00:00+00:00",
            "status": "critical", "details": {"instance": instance, "type": "redis"}}  # fmt: skip


def _item(index: int, kind: str = "events", code: str = "not_owner") -> dict:
    return {"kind": kind, "index": index, "field": "details.instance", "code": code,
            "reason": "instance 10.0.0.1:6379 of 'redis' is owned by agent 'vm'"}  # fmt: skip


BATCH = {
    "batch_id": "a-0001",
    "agent": "a",
    "metrics": [{"metric_type": "coreplane_redis_up", "service_name": "redis",
                 "timestamp": "2026-01-01T00:00:00+00:00", "value": 0.0, "tags": {}}],
    "events": [_health("redis", "10.0.0.1:6379"), _health("redis", "10.0.0.2:6379"),
               {"event_type": "agent.spool_overflow", "service_name": "coreplane_agent",
                "timestamp": "2026-01-01T00:00:00+00:00", "details": {}},
               _health("pg", "10.0.0.3:5432")],
}  # fmt: skip


def test_only_the_refused_health_events_leave_the_batch_under_a_new_id():
    refused = not_owner(Refused(409, "…", [_item(0), _item(3)]), "events", len(BATCH["events"]))
    assert refused == {0: _item(0)["reason"], 3: _item(3)["reason"]}
    rest, dropped = without_refused(BATCH, refused)
    assert rest["batch_id"] == "a-0001-r" != BATCH["batch_id"]
    assert rest["metrics"] == BATCH["metrics"]
    assert rest["events"] == [BATCH["events"][1], BATCH["events"][2]]
    assert dropped == [
        ("redis", "10.0.0.1:6379", _item(0)["reason"]),
        ("pg", "10.0.0.3:5432", _item(3)["reason"]),
    ]
    # The same refusal splits the same batch the same way (a crash between writing the rest
    # and removing the original resends the rest as a duplicate, not as new data).
    assert without_refused(BATCH, refused) == (rest, dropped)


def test_a_batch_of_only_refused_events_leaves_nothing_to_send():
    alone = {**BATCH, "metrics": [], "events": [BATCH["events"][0]]}
    rest, dropped = without_refused(alone, {0: "owned by agent 'vm'"})
    assert rest is None and dropped == [("redis", "10.0.0.1:6379", "owned by agent 'vm'")]


def test_any_other_refusal_is_not_split():
    sent = len(BATCH["events"])
    assert not_owner(Refused(409, "a different batch with id 'a-0001'"), "events", sent) is None
    assert not_owner(Refused(422, "…", [_item(0)]), "events", sent) is None
    assert not_owner(Refused(409, "…", [_item(0), _item(1, code="other")]), "events", sent) is None
    assert not_owner(Refused(409, "…", [_item(0, kind="targets")]), "events", sent) is None
    assert not_owner(Refused(409, "…", [_item(sent)]), "events", sent) is None  # not an item it sent


def test_a_new_id_stays_within_the_control_planes_limit():
    long = "a" * 99
    assert len(resent_id(long)) <= MAX_BATCH_ID
    assert resent_id(long) == resent_id(long) != resent_id("b" * 99)


def test_the_rest_takes_the_refused_batchs_place_in_the_spool(tmp_path):
    spool = Spool(tmp_path / "spool", 1 << 20)
    first = spool.append(BATCH)
    spool.append({**BATCH, "batch_id": "a-0002"})
    rest, _ = without_refused(BATCH, {0: "owned by agent 'vm'"})
    spool.replace(first, rest)
    sent = [json.loads(gzip.decompress(body))["batch_id"] for _path, body in spool.pending()]
    assert sent == ["a-0001-r", "a-0002"]


def test_a_disowned_target_is_said_once_and_its_health_events_are_recognised():
    buffer = Buffer()
    disowned = Disowned("a", buffer)
    disowned.add("redis", "10.0.0.1:6379", "owned by agent 'vm'")
    disowned.add("redis", "10.0.0.1:6379", "owned by agent 'vm'")
    _metrics, events = buffer.drain()
    assert [e["event_type"] for e in events] == ["agent.target_refused"]
    assert events[0]["details"]["instance"] == "10.0.0.1:6379"
    assert "/api/v1/services/redis/instances/10.0.0.1:6379/owner" in events[0]["details"]["message"]
    assert disowned.health_about(_health("redis", "10.0.0.1:6379"))
    assert not disowned.health_about(_health("redis", "10.0.0.2:6379"))
    assert not disowned.health_about({**_health("redis", "10.0.0.1:6379"), "event_type": "note"})
