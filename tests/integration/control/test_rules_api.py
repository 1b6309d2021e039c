"""Rules over the API (validated, versioned, pointing at the line) and two playbooks run
end to end: a `data.changed` event invalidates a cache tag in the real Redis, and a
dry-run rule records what it would have done without doing it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
import redis

from agents.config import TargetConfig
from tests.support.agents import running_agent
from tests.support.timing import until


@pytest.mark.parametrize(
    ("text", "line", "path", "says"),
    [
        ("- name: x\n  trigger: {event: {type: health}}\n  action: {kind: failovr, target: redis}\n",
         3, "rules[0].action.kind", "unknown action kind 'failovr'"),
        ("- name: x\n  trigger: {}\n  action: {kind: failover, target: redis}\n",
         2, "rules[0].trigger", "exactly one of event, metric, absence"),
        ("- name: x\n  trigger:\n    metric: {name: m, op: '=>', threshold: 1}\n  action: {kind: scale, target: c}\n",
         3, "rules[0].trigger.metric.op", "op must be one of"),
        ("- name: x\n  trigger: {event: {type: health}}\n  action: {kind: failover, target: '{{ event.'}\n",
         3, "rules[0].action.target", "template"),
        ("- name: x\n  trigger: {event: {type: health}}\n  action: {kind: failover, target: r}\n  cooldown_s: -1\n",
         4, "rules[0].cooldown_s", "cooldown_s"),
    ],
)  # fmt: skip
def test_a_broken_rule_is_refused_with_its_line_and_nothing_changes(
    control_plane_sqlite, text, line, path, says
):
    url, token, _log = control_plane_sqlite
    admin = {"Authorization": f"Bearer {token}"}
    response = httpx.put(f"{url}/api/v1/rules", headers=admin, json={"yaml": text, "version": 0})
    assert response.status_code == 422, response.text
    problem = response.json()["errors"][0]
    assert (problem["line"], problem["field"]) == (line, path)
    assert says in problem["reason"]
    current = httpx.get(f"{url}/api/v1/rules", headers=admin).json()
    assert current["version"] == 0 and "redis-failover" in current["yaml"]


def test_rules_are_versioned_and_a_stale_write_conflicts(control_plane_sqlite):
    url, token, _log = control_plane_sqlite
    admin = {"Authorization": f"Bearer {token}"}
    text = "- name: quiet\n  trigger: {absence: {service: nothing, for_s: 60}}\n  action: {kind: drain, target: lb}\n"
    first = httpx.put(f"{url}/api/v1/rules", headers=admin, json={"yaml": text, "version": 0})
    assert first.status_code == 200 and first.json()["version"] == 1
    stale = httpx.put(f"{url}/api/v1/rules", headers=admin, json={"yaml": text, "version": 0})
    assert stale.status_code == 409
    # The generic settings route may not bypass validation.
    bypass = httpx.put(
        f"{url}/api/v1/settings/policy.rules", headers=admin, json={"value": {"yaml": "x"}, "version": 1}
    )
    assert bypass.status_code == 403


def _ingest(url: str, admin: dict, event: dict) -> None:
    batch = {"batch_id": uuid.uuid4().hex, "agent": "test", "metrics": [], "events": [event]}
    response = httpx.post(f"{url}/api/v1/ingest", headers=admin, json=batch)
    assert response.status_code == 202, response.text


def test_a_data_change_invalidates_its_tag_and_a_dry_run_only_says_so(
    control_plane_sqlite, services, tmp_path
):
    url, token, log = control_plane_sqlite
    admin = {"Authorization": f"Bearer {token}"}
    tag = f"products-{uuid.uuid4().hex[:6]}"
    cache = TargetConfig(type="redis", name="cache", address=services.redis.url, role="primary", interval_s=1)
    with running_agent(url, token, tmp_path, cache, name="cache-agent"):
        until("the agent to register the cache",
              lambda: httpx.get(f"{url}/api/v1/services/cache", headers=admin).status_code == 200, 15)  # fmt: skip
        now = datetime.now(UTC).isoformat()
        _ingest(url, admin, {"event_type": "data.changed", "service_name": "cache", "timestamp": now,
                             "details": {"tags": [tag]}})  # fmt: skip

        def finished() -> list[dict] | None:
            actions = httpx.get(
                f"{url}/api/v1/actions", headers=admin, params={"kind": "cache.invalidate"}
            ).json()
            return actions if actions and actions[0]["state"] in ("succeeded", "failed") else None

        actions = until("an invalidation to finish", finished, 15, 0.2, logs=lambda: log.read_text()[-2000:])
        assert actions[0]["state"] == "succeeded", actions[0]["result"]
        assert actions[0]["rule"] == "cache-invalidate-on-data-change"
        assert actions[0]["params"]["tags"] == [tag]  # the event's list came through as a list
        assert redis.Redis.from_url(services.redis.url).get(f"coreplane:tag:{tag}") == b"1"

        dry = (
            "- name: would-drain\n  dry_run: true\n  trigger: {event: {type: deploy.started}}\n"
            "  action: {kind: drain, target: lb, params: {server: '{{ event.details.server }}'}}\n"
        )
        assert (
            httpx.put(f"{url}/api/v1/rules", headers=admin, json={"yaml": dry, "version": 0}).status_code
            == 200
        )
        _ingest(url, admin, {"event_type": "deploy.started", "service_name": "app",
                             "timestamp": datetime.now(UTC).isoformat(), "details": {"server": "web1"}})  # fmt: skip
        notes = until("the dry-run rule's record", lambda: httpx.get(
            f"{url}/api/v1/rules/evaluations", headers=admin, params={"rule": "would-drain"}).json(), 10, 0.2)  # fmt: skip
        assert notes[0]["outcome"] == "dry_run"
        assert "would run drain on lb" in notes[0]["reason"] and "web1" in notes[0]["reason"]
        assert httpx.get(f"{url}/api/v1/actions", headers=admin, params={"kind": "drain"}).json() == []
