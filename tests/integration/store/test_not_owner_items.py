"""A 409 for reports on other agents' instances names each refused one (issue 12, finding 3
follow-up): an agent reads the items, drops those reports and sends the rest, instead of
having every heartbeat refused and every batch dead-lettered after a reassignment."""

from __future__ import annotations

from tests.integration.store.test_agent_trust import VM_REDIS, _agent, _heartbeat, _heartbeats, _instances
from tests.integration.store.test_ingest import batch, now

VM_PG = {"service": "pg", "kind": "postgres", "address": "10.0.0.2:5432", "status": "passing", "ttl_s": 300}


def _vm_owns_two(api) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    vm, b = _agent(api, "vm"), _agent(api, "b")
    sent = api.post("/api/v1/agents/heartbeat", json=_heartbeat("vm", VM_REDIS, VM_PG), headers=vm)
    assert sent.status_code == 202, sent.text
    return vm, b


def _health(service: str, address: str) -> dict:
    return {"event_type": "health", "service_name": service, "timestamp": now().isoformat(),
            "status": "critical", "details": {"instance": address, "type": "redis"}}  # fmt: skip


def test_a_refused_heartbeat_names_every_target_another_agent_owns(api, store):
    _vm, b = _vm_owns_two(api)
    before, beats = _instances(api), _heartbeats(store)
    own = VM_REDIS | {"address": "10.0.0.9:6379"}
    body = _heartbeat("b", VM_REDIS, own, VM_PG)
    response = api.post("/api/v1/agents/heartbeat", json=body, headers=b)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert "belongs to agent 'vm'" in problem["detail"] and "/owner" in problem["detail"]
    assert [(e["kind"], e["index"], e["field"], e["code"]) for e in problem["errors"]] == [
        ("targets", 0, "address", "not_owner"),
        ("targets", 2, "address", "not_owner"),
    ]
    assert all("owned by agent 'vm'" in e["reason"] for e in problem["errors"])
    # Still refused whole: b's own target and its heartbeat are not stored either.
    assert _instances(api) == before
    assert _heartbeats(store) == beats
    # Without the refused targets it goes in (what the agent does with the items).
    again = api.post("/api/v1/agents/heartbeat", json=_heartbeat("b", own), headers=b)
    assert again.status_code == 202


def test_a_refused_batch_names_every_health_event_about_another_agents_instance(api, store):
    _vm, b = _vm_owns_two(api)
    before, metrics = _instances(api), store.count("infrastructure_metrics")
    note = {"event_type": "note", "service_name": "redis", "timestamp": now().isoformat(),
            "details": {"instance": "10.0.0.1:6379"}}  # fmt: skip
    events = [
        note,
        _health("redis", "10.0.0.1:6379"),
        _health("redis", "10.0.0.9:6379"),
        _health("pg", "10.0.0.2:5432"),
    ]
    response = api.post("/api/v1/ingest", json=batch("b-1", 3) | {"agent": "b", "events": events}, headers=b)
    assert response.status_code == 409
    problem = response.json()
    assert [(e["kind"], e["index"], e["field"], e["code"]) for e in problem["errors"]] == [
        ("events", 1, "details.instance", "not_owner"),
        ("events", 3, "details.instance", "not_owner"),
    ]
    assert (
        "'pg'" in problem["errors"][1]["reason"] and "owned by agent 'vm'" in problem["errors"][1]["reason"]
    )
    assert _instances(api) == before
    assert store.count("infrastructure_metrics") == metrics
    assert store.count("ingest_batches") == 0


def test_a_batch_id_conflict_carries_no_not_owner_items(api, store):
    """The agent splits a batch only on not_owner items: a reused id stays a plain 409."""
    vm = _agent(api, "vm")
    assert api.post("/api/v1/ingest", json=batch("x", 2) | {"agent": "vm"}, headers=vm).status_code == 202
    conflict = api.post("/api/v1/ingest", json=batch("x", 3) | {"agent": "vm"}, headers=vm)
    assert conflict.status_code == 409
    assert "errors" not in conflict.json()
