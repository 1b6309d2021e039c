"""Webhook fields the store cannot hold (issue 12, finding 16): NUL bytes, values longer
than their columns, NaN. Each gets a 422 naming the field, never a 500, on a real
`coreplane serve` over each kind of store; values right at the limits are stored."""

from __future__ import annotations

import json
import secrets
import uuid

import httpx
import pytest

from tests.support.serve import running_control_plane
from tests.support.stores import migrated_url

HOOK = "/api/v1/webhooks/alertmanager"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hooked(request, services, tmp_path_factory):
    """(base URL, webhook token) of a serve with the webhook configured, on each kind of store."""
    tmp = tmp_path_factory.mktemp("webhook-input")
    token = secrets.token_urlsafe(24)
    with (
        migrated_url(request.param, tmp, services) as url,
        running_control_plane(url, log=tmp / "serve.log", webhooks__alertmanager_token=token) as (base, _),
    ):
        yield base, token


def _alert(**fields) -> dict:
    alert = {"status": "firing", "labels": {"alertname": "Odd", "service": f"odd-{uuid.uuid4().hex[:8]}"},
             "annotations": {"summary": "odd input"}, "startsAt": "2026-03-01T10:00:00Z"}  # fmt: skip
    for key, value in fields.items():
        if key in ("labels", "annotations"):
            alert[key] = {**alert[key], **value}
        else:
            alert[key] = value
    return alert


def _post(base: str, token: str, payload: dict) -> httpx.Response:
    # json.dumps, not httpx's json=: it must send NaN as the bare token some senders emit.
    return httpx.post(base + HOOK, content=json.dumps(payload),
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"alerts": [_alert(labels={"team": "a\x00b"})]}, "alerts.0.labels.team"),
        ({"alerts": [_alert(labels={"te\x00am": "a"})]}, "alerts.0.labels.te\x00am"),
        ({"alerts": [_alert(annotations={"summary": "\x00"})]}, "alerts.0.annotations.summary"),
        ({"alerts": [_alert(fingerprint="ab\x00cd")]}, "alerts.0.fingerprint"),
        ({"alerts": [_alert(generatorURL="http://x/\x00")]}, "alerts.0.generatorURL"),
        ({"alerts": [_alert()], "receiver": "core\x00plane"}, "receiver"),
        ({"alerts": [_alert()], "groupKey": "{}:\x00"}, "groupKey"),
        ({"alerts": [_alert(labels={"alertname": "A" * 201})]}, "alerts.0.labels"),
        ({"alerts": [_alert(labels={"team": "v" * 4097})]}, "alerts.0.labels.team"),
        ({"alerts": [_alert(labels={"k" * 201: "v"})]}, "alerts.0.labels"),
        ({"alerts": [_alert(annotations={"description": "d" * 4097})]}, "alerts.0.annotations.description"),
        ({"alerts": [_alert(values={"B": float("nan")})]}, "alerts.0.values.B"),
        ({"alerts": [_alert(values={"B": float("inf")})]}, "alerts.0.values.B"),
    ],
    ids=["nul-label", "nul-label-name", "nul-annotation", "nul-fingerprint", "nul-url", "nul-receiver",
         "nul-group-key", "long-alertname", "long-label", "long-label-name", "long-annotation", "nan", "inf"],
)  # fmt: skip
def test_a_field_the_store_cannot_hold_gets_422_naming_it(hooked, payload, field):
    base, token = hooked
    answer = _post(base, token, payload)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem
    if field == "alerts.0.labels" and "A" * 201 in json.dumps(payload):
        assert "alertname" in problem["detail"] and "200" in problem["detail"]


def test_values_right_at_the_limits_are_stored(hooked):
    base, token = hooked
    alert = _alert(labels={"alertname": "Ä" * 200, "team": "v" * 4096, "k" * 200: "v"},
                   annotations={"description": "d" * 4096}, fingerprint="f" * 64,
                   values={"B": 1e308})  # fmt: skip
    answer = _post(base, token, {"alerts": [alert], "receiver": "r" * 500})
    assert answer.status_code == 200, answer.text
    assert answer.json()["stored"] == 1
