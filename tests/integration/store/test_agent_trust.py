"""The agent trust boundary on both dialects (issue 12, findings 3 and 11): an agent speaks
only for itself and its own instances, an instance's actions go to its owner alone, an
admin reassigns an instance (audited), and batch ids are each agent's own."""

from __future__ import annotations

import gzip
import json

import sqlalchemy as sa

from controlplane.telemetry import HEARTBEAT_METRIC
from tests.integration.store.test_ingest import batch, now, points

VM_REDIS = {"service": "redis", "kind": "redis", "address": "10.0.0.1:6379", "role": "replica",
            "status": "passing", "ttl_s": 300}  # fmt: skip


IDS: dict[str, str] = {}


def _agent(api, name: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Register ``name``; the headers its token sends (its id goes to IDS)."""
    response = api.post("/api/v1/agents/register", json={"name": name})
    assert response.status_code == 201, response.text
    IDS[name] = response.json()["id"]
    return {"Authorization": f"Bearer {response.json()['token']}"}


def _poll(api, name: str, headers: dict) -> list[dict] | int:  # type: ignore[no-untyped-def]
    """What a poll of agent ``name``'s actions gets with ``headers`` (the status when refused)."""
    response = api.get(f"/api/v1/agents/{IDS[name]}/actions", headers=headers)
    return response.json() if response.status_code == 200 else response.status_code


def _heartbeat(agent: str, *targets: dict) -> dict:
    return {"agent": agent, "version": "1", "hostname": "h", "uptime_s": 1, "targets": list(targets)}


def _instances(api) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """Every catalog instance by address: what a forged report could have changed."""
    return {
        i["address"]: {k: i[k] for k in ("role", "health", "agent", "pending_health")}
        for service in api.get("/api/v1/services").json()
        for i in service["instances"]
    }


def _heartbeats(store) -> int:  # type: ignore[no-untyped-def]
    with store.engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT count(*) FROM infrastructure_metrics WHERE metric_type = :m"),
            {"m": HEARTBEAT_METRIC},
        ).scalar_one()


def _vm_owns_redis(api) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    vm, b = _agent(api, "vm"), _agent(api, "b")
    assert (
        api.post("/api/v1/agents/heartbeat", json=_heartbeat("vm", VM_REDIS), headers=vm).status_code == 202
    )
    assert _instances(api)["10.0.0.1:6379"] == {
        "role": "replica", "health": "passing", "agent": "vm", "pending_health": None
    }  # fmt: skip
    return vm, b


def test_a_heartbeat_in_another_agents_name_is_refused(api, store):
    _vm, b = _vm_owns_redis(api)
    before, beats = _instances(api), _heartbeats(store)
    response = api.post("/api/v1/agents/heartbeat", json=_heartbeat("vm"), headers=b)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "'b'" in response.json()["detail"] and "'vm'" in response.json()["detail"]
    assert _heartbeats(store) == beats
    assert _instances(api) == before


def test_a_heartbeat_about_another_agents_instance_is_refused_whole(api, store):
    vm, b = _vm_owns_redis(api)
    before, beats = _instances(api), _heartbeats(store)
    forged = VM_REDIS | {"role": "primary", "status": "critical"}
    own = VM_REDIS | {"address": "10.0.0.9:6379"}
    response = api.post("/api/v1/agents/heartbeat", json=_heartbeat("b", own, forged), headers=b)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    assert "belongs to agent 'vm'" in detail and "/owner" in detail
    # Atomic: neither the forged report, nor b's own target, nor b's heartbeat is stored.
    assert _instances(api) == before
    assert _heartbeats(store) == beats
    # The owner itself still reports as before.
    assert (
        api.post("/api/v1/agents/heartbeat", json=_heartbeat("vm", VM_REDIS), headers=vm).status_code == 202
    )


def test_a_health_event_about_another_agents_instance_refuses_the_whole_batch(api, store):
    _vm, b = _vm_owns_redis(api)
    before, metrics = _instances(api), store.count("infrastructure_metrics")
    forged = {"event_type": "health", "service_name": "redis", "timestamp": now().isoformat(),
              "status": "critical", "details": {"instance": "10.0.0.1:6379", "role": "primary", "type": "redis"}}  # fmt: skip
    body = batch("b-forged", 5) | {"agent": "b", "events": [forged]}
    response = api.post("/api/v1/ingest", json=body, headers=b)
    # 409, not 403: the agent's spool keeps a 403 batch to retry for ever; this one it dead-letters.
    assert response.status_code == 409
    assert "belongs to agent 'vm'" in response.json()["detail"]
    assert _instances(api) == before
    assert store.count("infrastructure_metrics") == metrics
    assert store.count("ingest_batches") == 0
    # The batch id was not used up: the same id without the forged event goes in.
    honest = batch("b-forged", 5) | {"agent": "b"}
    assert api.post("/api/v1/ingest", json=honest, headers=b).json()["duplicate"] is False


def test_an_instances_action_goes_to_its_owner_and_only_the_owner_reports_on_it(api, store):
    vm, b = _vm_owns_redis(api)
    created = api.post(
        "/api/v1/actions",
        json={"kind": "redis.repoint", "target": "redis",
              "params": {"instance": "10.0.0.1:6379", "primary_host": "10.0.0.2", "primary_port": 6379}},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    action_id = created.json()["id"]
    assert _poll(api, "b", b) == []
    assert _poll(api, "vm", b) == 403
    (handed,) = _poll(api, "vm", vm)
    assert handed["id"] == action_id
    for path, body in ((f"/api/v1/actions/{action_id}/start", None),
                       (f"/api/v1/actions/{action_id}/result", {"ok": True, "output": {"forged": 1}})):  # fmt: skip
        refused = api.post(path, json=body, headers=b)
        assert refused.status_code == 403, path
        assert refused.headers["content-type"] == "application/problem+json"
    detail = api.get(f"/api/v1/actions/{action_id}").json()
    assert detail["state"] == "dispatched" and detail["result"] is None
    # Even its owner's result must be storable: a NUL byte was a 500 on PostgreSQL.
    for odd in ({"ok": False, "error": "boom\x00"}, {"ok": True, "output": {"log": "a\x00b"}}):
        refused = api.post(f"/api/v1/actions/{action_id}/result", json=odd, headers=vm)
        assert refused.status_code == 422 and "NUL" in refused.text, refused.text
    assert api.get(f"/api/v1/actions/{action_id}").json()["state"] == "dispatched"
    done = api.post(f"/api/v1/actions/{action_id}/result", json={"ok": True}, headers=vm)
    assert done.json()["state"] == "succeeded"


def test_an_admin_reassigns_an_instance_with_an_audit_row_and_its_actions_follow(api, store):
    vm, b = _vm_owns_redis(api)
    pending = api.post(
        "/api/v1/actions",
        json={"kind": "cache.flush", "target": "redis", "params": {"instance": "10.0.0.1:6379"}},
    ).json()  # created for vm, not yet dispatched
    owner = "/api/v1/services/redis/instances/10.0.0.1:6379/owner"
    assert api.post(owner, json={"agent": "b"}, headers=b).status_code == 403  # agents may not
    unknown = api.post(owner, json={"agent": "nobody"})
    assert unknown.status_code == 422 and "nobody" in unknown.json()["detail"]
    missing = api.post("/api/v1/services/redis/instances/10.9.9.9:1/owner", json={"agent": "b"})
    assert missing.status_code == 404
    moved = api.post(owner, json={"agent": "b"})
    assert moved.status_code == 200, moved.text
    assert _instances(api)["10.0.0.1:6379"]["agent"] == "b"
    (entry,) = api.get("/api/v1/audit", params={"action": "catalog.reassign"}).json()
    assert entry["actor"] == "admin:admin" and entry["target"] == "redis 10.0.0.1:6379"
    assert entry["details"] == {"from": "vm", "to": "b"}
    # Now the old owner is the stranger, the new one reports.
    assert (
        api.post("/api/v1/agents/heartbeat", json=_heartbeat("vm", VM_REDIS), headers=vm).status_code == 409
    )
    critical = VM_REDIS | {"status": "critical"}
    assert api.post("/api/v1/agents/heartbeat", json=_heartbeat("b", critical), headers=b).status_code == 202
    assert _instances(api)["10.0.0.1:6379"]["health"] == "critical"
    # The action made for vm before the move is handed to b, not to vm.
    assert _poll(api, "vm", vm) == []
    assert [a["id"] for a in _poll(api, "b", b)] == [pending["id"]]


def test_batch_ids_are_each_agents_own_and_a_reused_id_with_new_content_conflicts(api, store):
    vm, b = _agent(api, "vm"), _agent(api, "b")
    first = batch("shared-id", 4) | {"agent": "vm"}
    sent = json.dumps(first).encode()  # what the agent spools, and resends byte for byte
    as_json = {"Content-Type": "application/json"}
    assert api.post("/api/v1/ingest", content=sent, headers=vm | as_json).json()["duplicate"] is False
    # Another agent using the same id stores its own batch: no silent drop.
    theirs = batch("shared-id", 3) | {"agent": "b"}
    stored = api.post("/api/v1/ingest", json=theirs, headers=b)
    assert stored.status_code == 202 and stored.json()["duplicate"] is False
    assert store.count("infrastructure_metrics") == 7
    # The same batch again, gzipped this time: a duplicate, nothing new.
    gzipped = {"Content-Encoding": "gzip", **as_json}
    again = api.post("/api/v1/ingest", content=gzip.compress(sent), headers=vm | gzipped)
    assert again.status_code == 202 and again.json()["duplicate"] is True
    # The admin replaying vm's spooled batch in vm's name is recognised as the same batch.
    assert api.post("/api/v1/ingest", content=sent, headers=as_json).json()["duplicate"] is True
    # The same id with other content: 409, and nothing stored.
    changed = first | {"metrics": points(4, metric="coreplane_other_value")}
    conflict = api.post("/api/v1/ingest", json=changed, headers=vm)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    assert "different batch with id 'shared-id'" in conflict.json()["detail"]
    assert store.count("infrastructure_metrics") == 7
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT agent, content_hash FROM ingest_batches ORDER BY agent")).all()
    assert [r.agent for r in rows] == ["b", "vm"]
    assert all(len(r.content_hash) == 64 for r in rows)
