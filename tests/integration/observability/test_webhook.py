"""POST /api/v1/webhooks/alertmanager on a real `coreplane serve` (SQLite store): who may
post, both payload dialects, deduplication by fingerprint, refusals, and a policy rule
triggered by an alert's name."""

from __future__ import annotations

import copy
import secrets
import uuid

import httpx
import pytest
import yaml

from tests.support.serve import running_control_plane
from tests.support.stores import migrated_url
from tests.support.timing import until

HOOK = "/api/v1/webhooks/alertmanager"
MAX_BODY = 8192


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hooked(request, services, tmp_path_factory):
    """(base URL, admin token, webhook token) of a serve with the webhook configured, on
    each kind of store."""
    tmp = tmp_path_factory.mktemp("webhook")
    token = secrets.token_urlsafe(24)
    settings = {"webhooks__alertmanager_token": token, "webhooks__max_body_bytes": str(MAX_BODY)}
    with (
        migrated_url(request.param, tmp, services) as url,
        running_control_plane(url, log=tmp / "serve.log", **settings) as (base, admin),
    ):
        yield base, admin, token


def _alert(name: str, status: str = "firing", starts: str = "2026-03-01T10:00:00.123456789+01:00", **labels):
    return {
        "status": status,
        "labels": {"alertname": name, "severity": "critical", **labels},
        "annotations": {"summary": f"{name} is happening", "description": "long text"},
        "startsAt": starts,
        "endsAt": "2026-03-01T10:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
    }


def _payload(*alerts: dict) -> dict:
    """Alertmanager's webhook body, version 4."""
    return {
        "version": "4", "groupKey": '{}:{alertname="x"}', "truncatedAlerts": 0,
        "status": alerts[0]["status"], "receiver": "coreplane",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "alerts": list(alerts),
    }  # fmt: skip


def _post(base: str, token: str, body: dict) -> httpx.Response:
    return httpx.post(base + HOOK, json=body, headers={"Authorization": f"Bearer {token}"})


def _events(base: str, admin: str, service: str) -> list[dict]:
    answer = httpx.get(
        f"{base}/api/v1/events",
        params={"event_type": "alert", "service_name": service},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert answer.status_code == 200, answer.text
    return list(reversed(answer.json()["events"]))  # oldest first


def test_without_a_token_configured_the_webhook_says_what_to_set(control_plane_sqlite):
    url, admin, _ = control_plane_sqlite
    answer = httpx.post(url + HOOK, json=_payload(_alert("X")), headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert "COREPLANE_WEBHOOKS__ALERTMANAGER_TOKEN" in answer.json()["detail"]


def test_the_webhook_takes_its_token_or_an_operator_token(hooked):
    base, admin, token = hooked
    service = f"auth-{uuid.uuid4().hex[:8]}"
    body = _payload(_alert("AuthCheck", service=service))
    assert httpx.post(base + HOOK, json=body).status_code == 401
    assert _post(base, "not-the-token", body).status_code == 401
    issued = {}
    for role in ("viewer", "operator"):
        created = httpx.post(f"{base}/api/v1/tokens", json={"name": f"{role}-{service}", "role": role},
                             headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
        assert created.status_code == 201, created.text
        issued[role] = created.json()["token"]
    refused = _post(base, issued["viewer"], body)
    assert refused.status_code == 403
    assert "operator" in refused.json()["detail"]
    assert _post(base, token, body).json()["stored"] == 1
    assert _post(base, issued["operator"], body).json()["deduplicated"] == 1
    assert _post(base, admin, body).json()["deduplicated"] == 1


def test_a_firing_alert_is_stored_once_and_each_change_once(hooked):
    base, admin, token = hooked
    service = f"lab-{uuid.uuid4().hex[:8]}"
    firing = {**_alert("RedisDown", service=service, instance="10.0.0.1:6379"), "fingerprint": f"fp{service}"}
    resolved = {**firing, "status": "resolved", "endsAt": "2026-03-01T09:30:00Z"}
    later = {**firing, "startsAt": "2026-03-01T11:00:00Z"}
    outcomes = [
        _post(base, token, _payload(p)).json()
        for p in (firing, firing, resolved, resolved, firing, later)  # a late retry, then a new firing
    ]
    assert [(o["stored"], o["deduplicated"]) for o in outcomes] == [
        (1, 0),
        (0, 1),
        (1, 0),
        (0, 1),
        (0, 1),
        (1, 0),
    ]
    assert {o["source"] for o in outcomes} == {"alertmanager"}
    events = _events(base, admin, service)
    assert [e["status"] for e in events] == ["firing", "resolved", "firing"]
    first = events[0]["details"]
    assert first["fingerprint"] == f"fp{service}"
    assert first["alertname"] == "RedisDown" and first["severity"] == "critical"
    assert first["summary"] == "RedisDown is happening"
    assert first["labels"]["instance"] == first["instance"] == "10.0.0.1:6379"
    assert first["annotations"]["description"] == "long text"
    assert first["starts_at"] == "2026-03-01T09:00:00.123456Z"  # to UTC, nanoseconds cut
    assert first["ends_at"] is None  # Alertmanager's 0001-01-01: not ended
    assert first["source"] == "alertmanager"
    assert events[1]["details"]["ends_at"] == "2026-03-01T09:30:00Z"


def test_grafana_payload_is_taken_with_its_values(hooked):
    base, admin, token = hooked
    job = f"grafana-{uuid.uuid4().hex[:8]}"
    body = {
        "receiver": "My Super Webhook", "status": "firing", "orgId": 1, "version": "1",
        "groupKey": "{}:{}", "truncatedAlerts": 0, "state": "alerting", "title": "[FIRING:1]",
        "message": "**Firing**", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://grafana:3000/",
        "alerts": [{
            "status": "firing", "labels": {"alertname": "High memory usage", "team": "blue", "job": job},
            "annotations": {"summary": "This alert was triggered for zone us-1"},
            "startsAt": "2026-03-01T09:51:03.157076+02:00", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://grafana:3000/alerting/1afz29v7z/edit", "fingerprint": "c6eadffa33fcdf37",
            "silenceURL": "http://grafana:3000/alerting/silence/new", "dashboardURL": "", "panelURL": "",
            "values": {"B": 44.23943737541908, "C": 1},
        }],
    }  # fmt: skip
    answer = _post(base, token, body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"source": "grafana", "received": 1, "stored": 1, "deduplicated": 0}
    (event,) = _events(base, admin, job)  # no `service` label: the `job` label names the service
    assert event["details"]["source"] == "grafana"
    assert event["details"]["fingerprint"] == "c6eadffa33fcdf37"
    assert event["details"]["values"] == {"B": 44.23943737541908, "C": 1}
    assert event["details"]["summary"] == "This alert was triggered for zone us-1"


def test_without_a_fingerprint_the_sorted_labels_identify_the_alert(hooked):
    base, admin, token = hooked
    service = f"nofp-{uuid.uuid4().hex[:8]}"
    one = _alert("QueueBacklog", service=service, queue="a")
    reordered = {**one, "labels": dict(reversed(list(one["labels"].items())))}
    other = _alert("QueueBacklog", service=service, queue="b")
    results = [_post(base, token, _payload(p)).json()["stored"] for p in (one, reordered, other)]
    assert results == [1, 0, 1]
    fingerprints = [e["details"]["fingerprint"] for e in _events(base, admin, service)]
    assert len(set(fingerprints)) == 2 and all(len(f) == 16 for f in fingerprints)


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"this is not json", 400, "not valid JSON"),
        (b"{}", 422, "alerts: Field required"),
        (b"[]", 422, "not an Alertmanager"),
        (b'{"alerts": [{"status": "burning", "labels": {}}]}', 422, "alerts.0.status"),
        (b'{"alerts": [{"status": "firing", "labels": {"a": 1}}]}', 422, "alerts.0.labels.a"),
        (b'{"alerts": [{"status": "firing", "labels": {}, "startsAt": "yesterday"}]}', 422, "startsAt"),
        (b'{"alerts": [{"status": "firing", "labels": {}, "fingerprint": "' + b"f" * 65 + b'"}]}', 422,
         "fingerprint"),
        (b'{"alerts": [], "pad": "' + b"x" * MAX_BODY + b'"}', 413, f"{MAX_BODY}-byte limit"),
    ],
)  # fmt: skip
def test_a_malformed_payload_gets_a_4xx_saying_what_is_wrong(hooked, body, status, says):
    base, _, token = hooked
    answer = httpx.post(
        base + HOOK, content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert says in answer.json()["detail"]


def test_a_policy_rule_triggers_on_an_alert_by_its_name(hooked):
    base, admin, token = hooked
    auth = {"Authorization": f"Bearer {admin}"}
    service = f"storage-{uuid.uuid4().hex[:8]}"
    current = httpx.get(f"{base}/api/v1/rules", headers=auth).json()
    rule = {
        "name": f"disk-full-{service}", "dry_run": True, "cooldown_s": 0,
        "trigger": {"event": {"type": "alert", "service": service, "status": "firing",
                              "match": {"alertname": "DiskFull"}}},
        "action": {"kind": "cache.invalidate", "target": service,
                   "params": {"tags": ["{{ event.details.alertname }}"]}},
    }  # fmt: skip
    # A second rule, on an alert posted last: once it was evaluated, a later round has read
    # both earlier alerts again.
    fence = copy.deepcopy(rule) | {
        "name": f"fence-{service}"
    }  # a copy: yaml would write shared parts as aliases
    fence["trigger"]["event"]["match"] = {"alertname": "Fence"}
    text = current["yaml"].rstrip() + "\n\n" + yaml.safe_dump([rule, fence], sort_keys=False)
    put = httpx.put(f"{base}/api/v1/rules", json={"yaml": text, "version": current["version"]}, headers=auth)
    assert put.status_code == 200, put.text
    for name in ("CpuHot", "DiskFull"):
        assert _post(base, token, _payload(_alert(name, service=service))).json()["stored"] == 1

    def evaluations(name: str = rule["name"]) -> list[dict]:
        answer = httpx.get(f"{base}/api/v1/rules/evaluations", params={"rule": name}, headers=auth)
        return answer.json()

    until("the DiskFull rule's evaluation", evaluations, 15, 0.1)
    assert _post(base, token, _payload(_alert("Fence", service=service))).json()["stored"] == 1
    until("the fence rule's evaluation, a later round", lambda: evaluations(fence["name"]), 15, 0.1)
    (evaluation,) = evaluations()  # a round or more later: still one, the CpuHot alert does not match
    assert evaluation["outcome"] == "dry_run"
    assert evaluation["context"]["event"]["details"]["alertname"] == "DiskFull"
    assert "['DiskFull']" in evaluation["reason"]
