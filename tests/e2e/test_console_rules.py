"""The Rules page against a real `coreplane serve`: a dry-run preview replays the stored events
and metrics of the last hour (firings at the right times, the cooldown suppressing the ones in
between) and creates nothing; broken rules are refused with their line; only admins save, with
CSRF and the version they read, through the same versioning and audit as the API."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from tests.support.console import console_login, csrf_of

PASSWORD = "correct horse battery staple"
# 40 minutes ago: inside the preview's hour, and too old for the live engine (it reads the last
# minute), so the shipped playbooks running in the server leave these alone.
BASE = (datetime.now(UTC) - timedelta(minutes=40)).replace(tzinfo=None, microsecond=0)
EVENTS_AT = (0, 10, 20, 45, 50, 100)  # seconds after BASE; a 30 s cooldown fires at 0, 45, 100
HIGH = (0, 150)  # seconds after BASE during which the metric is high
# (seconds after BASE, status) of one instance's deploys: held 20 s, so the first is superseded by
# the second before it could fire; the third fires at 320, as the fourth only comes after that.
DEPLOYS = ((0, "running"), (10, "done"), (300, "running"), (330, "done"))
RULES = """\
- name: shop-invalidate
  trigger:
    event: {type: data.changed, service: shop}
  action:
    kind: cache.invalidate
    target: "{{ event.service_name }}"
    params: {tags: "{{ event.details.tags }}"}
  cooldown_s: 30
  max_concurrency: 10
- name: shop-deep-queue
  trigger:
    metric: {name: coreplane_shop_depth_ratio, service: shop, agg: avg, window_s: 20, op: ">", threshold: 50, for_s: 30}
  action: {kind: scale, target: celery, params: {op: grow, n: 1}}
  cooldown_s: 600
- name: shop-stuck-deploy
  trigger:
    event: {type: deploy.state, service: shop, status: running, for_s: 20}
  action: {kind: scale, target: celery, params: {op: shrink, n: 1}}
  cooldown_s: 0
"""
BROKEN = "- name: x\n  trigger: {event: {type: health}}\n  action: {kind: failovr, target: redis}\n"


def _ingest(url: str, admin: dict, tag: str) -> None:
    def at(seconds: float) -> str:
        return (BASE + timedelta(seconds=seconds)).isoformat()

    events = [{"event_type": "data.changed", "service_name": "shop", "timestamp": at(s),
               "details": {"tags": [tag]}} for s in EVENTS_AT]  # fmt: skip
    events.append({"event_type": "data.changed", "service_name": "elsewhere", "timestamp": at(5)})
    events += [{"event_type": "deploy.state", "service_name": "shop", "timestamp": at(s), "status": status,
                "details": {"instance": "web1"}} for s, status in DEPLOYS]  # fmt: skip
    metrics = [{"metric_type": "coreplane_shop_depth_ratio", "service_name": "shop", "timestamp": at(s),
                "value": 100.0 if HIGH[0] <= s <= HIGH[1] else 0.0} for s in range(-60, 220, 5)]  # fmt: skip
    batch = {"batch_id": uuid.uuid4().hex, "agent": "test", "metrics": metrics, "events": events}
    response = httpx.post(f"{url}/api/v1/ingest", headers=admin, json=batch)
    assert response.status_code == 202, response.text


def _rows(page: str, rule: str) -> list[tuple[str, datetime, str]]:
    """(outcome, when, the row's text) of one rule's section of a preview."""
    section = page.split(f'data-preview-rule="{rule}"', 1)[1].split("data-preview-rule=", 1)[0]
    rows = re.findall(r'data-outcome="([^"]+)" data-at="([^"]+)">(.*?)</tr>', section, re.DOTALL)
    return [(outcome, datetime.fromisoformat(at), html.unescape(text)) for outcome, at, text in rows]


def _login(url: str, **form: str) -> httpx.Client:
    client, answer = console_login(url, **form)
    assert answer.status_code == 303
    return client


def test_the_preview_replays_the_last_hour_and_creates_nothing(control_plane_sqlite):
    url, token, _log = control_plane_sqlite
    api = {"Authorization": f"Bearer {token}"}
    tag = f"products-{uuid.uuid4().hex[:6]}"
    _ingest(url, api, tag)
    admin = _login(url, token=token)
    added = admin.post("/users", data={"csrf": csrf_of(admin.get("/users").text), "op": "add",
                                       "username": "olga", "password": PASSWORD, "role": "operator"})  # fmt: skip
    assert added.status_code == 303
    operator = _login(url, username="olga", password=PASSWORD)
    page = operator.get("/rules").text
    assert 'id="save"' not in page and "readonly" in page and 'data-rule="redis-failover"' in page

    before = [
        httpx.get(f"{url}/api/v1/{path}", headers=api).json() for path in ("actions", "rules/evaluations")
    ]
    answer = operator.post("/rules/preview", data={"csrf": csrf_of(page), "yaml": RULES})
    assert answer.status_code == 200, answer.text[-2000:]
    after = [
        httpx.get(f"{url}/api/v1/{path}", headers=api).json() for path in ("actions", "rules/evaluations")
    ]
    assert after == before  # a preview creates no action and no evaluation

    events = _rows(answer.text, "shop-invalidate")
    fired = [(when - BASE).total_seconds() for outcome, when, _ in events if outcome == "fired"]
    held = [(when - BASE).total_seconds() for outcome, when, _ in events if outcome == "suppressed"]
    assert fired == [0, 45, 100] and held == [10, 20, 50], events  # "elsewhere" is not the rule's service
    first = events[0][2]
    assert "cache.invalidate" in first and f'"tags": ["{tag}"]' in first and "on shop" in first
    assert all("cooldown" in text for outcome, _, text in events if outcome == "suppressed")

    metric = _rows(answer.text, "shop-deep-queue")
    fired = [(when - BASE).total_seconds() for outcome, when, _ in metric if outcome == "fired"]
    # High from 0 s: the 20 s window's average passes 50 by 25 s (the next 15 s step at the latest),
    # then must hold for 30 s; after that the 600 s cooldown holds every step back while it stays high.
    assert len(fired) == 1 and 40 <= fired[0] <= 56, metric
    later = [(when - BASE).total_seconds() for outcome, when, text in metric if outcome == "suppressed"]
    assert len(later) >= 3 and all(fired[0] < s <= HIGH[1] + 25 for s in later), metric
    assert "avg(coreplane_shop_depth_ratio[20s])" in metric[0][2] and '"op": "grow"' in metric[0][2]
    deploys = _rows(answer.text, "shop-stuck-deploy")
    assert [(o, (when - BASE).total_seconds()) for o, when, _ in deploys] == [("fired", 320)], deploys
    assert "held 20 s" in deploys[0][2]

    broken = operator.post("/rules/preview", data={"csrf": csrf_of(page), "yaml": BROKEN},
                           headers={"HX-Request": "true"})  # fmt: skip
    assert broken.status_code == 422
    assert broken.text.lstrip().startswith('<section id="preview">')  # just the block, for htmx to swap
    assert 'data-line="3"' in broken.text and "unknown action kind &#39;failovr&#39;" in broken.text

    # An operator may preview but not save: refused before anything changes.
    refused = operator.post("/rules", data={"csrf": csrf_of(page), "yaml": RULES, "version": "0"})
    assert refused.status_code == 403
    assert httpx.get(f"{url}/api/v1/rules", headers=api).json()["version"] == 0
    for client in (admin, operator):
        client.close()


def test_an_admin_saves_with_csrf_and_the_version_read(control_plane_sqlite):
    url, token, _log = control_plane_sqlite
    api = {"Authorization": f"Bearer {token}"}
    admin = _login(url, token=token)
    page = admin.get("/rules").text
    assert 'id="save"' in page and 'name="version" value="0"' in page
    csrf = csrf_of(page)

    assert admin.post("/rules", data={"yaml": RULES, "version": "0"}).status_code == 403  # no CSRF
    invalid = admin.post("/rules", data={"csrf": csrf, "yaml": BROKEN, "version": "0"})
    assert invalid.status_code == 422
    assert 'data-line="3"' in invalid.text and "rules[0].action.kind" in invalid.text
    kept = re.search(r'<textarea id="rules-yaml" name="yaml"[^>]*>(.*?)</textarea>', invalid.text, re.DOTALL)
    assert html.unescape(kept.group(1)) == BROKEN  # the submitted text, to fix in place
    assert httpx.get(f"{url}/api/v1/rules", headers=api).json()["version"] == 0

    saved = admin.post("/rules", data={"csrf": csrf, "yaml": RULES, "version": "0"})
    assert saved.status_code == 303 and saved.headers["location"] == "/rules"
    current = httpx.get(f"{url}/api/v1/rules", headers=api).json()
    assert current["version"] == 1 and current["yaml"] == RULES
    assert [r["name"] for r in current["rules"]] == [
        "shop-invalidate",
        "shop-deep-queue",
        "shop-stuck-deploy",
    ]
    audit = httpx.get(f"{url}/api/v1/audit", headers=api, params={"action": "rules.replace"}).json()
    assert [(a["actor"], a["details"]) for a in audit] == [("user:admin-token", {"version": 1})]
    page = admin.get("/rules").text
    assert "Version 1:" in page and "changed by admin-token" in page and 'data-rule="shop-deep-queue"' in page

    stale = admin.post("/rules", data={"csrf": csrf, "yaml": RULES + "# mine\n", "version": "0"})
    assert stale.status_code == 409 and "after you read version 0" in stale.text
    assert "# mine" in stale.text and 'name="version" value="1"' in stale.text  # kept, against the new one
    assert httpx.get(f"{url}/api/v1/rules", headers=api).json()["yaml"] == RULES
    admin.close()
