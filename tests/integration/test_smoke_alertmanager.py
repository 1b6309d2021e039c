"""Alertmanager's v2 API: post an alert, read it back, then amtool."""

import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from tests.support.services import reach, require


def test_an_alert_posted_is_listed(services):
    require(services.alertmanager.url, "alertmanager")
    api = f"{services.alertmanager.url}/api/v2"
    marker = uuid.uuid4().hex
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": "CoreplaneSmoke", "marker": marker},
        "annotations": {"summary": "smoke test"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }
    posted = reach("alertmanager", services.alertmanager.url, httpx.post, f"{api}/alerts", json=[alert])
    assert posted.status_code == 200
    listed = httpx.get(f"{api}/alerts", params={"filter": f'marker="{marker}"'}).json()
    assert [a["labels"]["marker"] for a in listed] == [marker]


def test_amtool_reads_the_running_alertmanager(services):
    require(services.alertmanager.url, "alertmanager")
    result = subprocess.run(
        ["amtool", "--alertmanager.url", services.alertmanager.url, "config", "show"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    # alerts/alertmanager.yml, as the harness runs it: every alert to the control plane's webhook.
    assert "receiver: coreplane" in result.stdout
    assert "url: http://127.0.0.1:8000/api/v1/webhooks/alertmanager" in result.stdout
