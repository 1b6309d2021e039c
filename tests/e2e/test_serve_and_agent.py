"""`coreplane serve` and `coreplane agent` as real processes."""

import re
import subprocess

import httpx

from controlplane.backends import BACKENDS
from tests.support.services import ROOT


def test_health_readiness_and_metrics_need_no_credential(control_plane):
    assert httpx.get(f"{control_plane.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{control_plane.url}/readyz").json() == {"status": "ready", "store": "sqlite"}
    metrics = httpx.get(f"{control_plane.url}/metrics").text
    assert "process_resident_memory_bytes" in metrics


def test_openapi_needs_a_credential(control_plane):
    url = f"{control_plane.url}/openapi.json"
    assert httpx.get(url).status_code == 401
    spec = httpx.get(url, headers={"Authorization": f"Bearer {control_plane.token}"}).json()
    assert "/api/v1/agents/heartbeat" in spec["paths"]
    assert "/healthz" in spec["paths"]


def test_api_refuses_a_missing_or_wrong_token_with_problem_json(control_plane):
    url = f"{control_plane.url}/api/v1/agents/heartbeat"
    body = {"agent": "x", "version": "1", "hostname": "h", "uptime_s": 1}
    missing = httpx.post(url, json=body)
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert "Authorization: Bearer" in missing.json()["detail"]
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_bad_input_gets_422_naming_the_field(control_plane):
    response = httpx.post(
        f"{control_plane.url}/api/v1/agents/heartbeat",
        json={"agent": "", "version": "1", "hostname": "h", "uptime_s": -1},
        headers={"Authorization": f"Bearer {control_plane.token}"},
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"body.agent", "body.uptime_s"}


def test_agent_heartbeat_shows_on_the_console(control_plane):
    sent = control_plane.coreplane("agent", "--once")
    assert sent.returncode == 0, sent.stderr
    with httpx.Client(base_url=control_plane.url) as browser:
        assert browser.get("/", follow_redirects=False).headers["location"] == "/login"
        form = browser.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        # Without the CSRF token the login is refused even with the right credential.
        refused = browser.post("/login", data={"token": control_plane.token})
        assert refused.status_code == 403
        wrong = browser.post("/login", data={"token": "wrong", "csrf": csrf})
        assert wrong.status_code == 401
        ok = browser.post("/login", data={"token": control_plane.token, "csrf": csrf})
        assert ok.status_code == 303
        page = browser.get("/").text
    assert 'data-agent="e2e-agent"' in page
    for backend in ("store", *(b.name for b in BACKENDS)):
        assert f'data-backend="{backend}" data-state="up"' in page, f"{backend} is not up on the console"


def test_agent_fails_clearly_when_the_control_plane_is_unreachable(control_plane):
    env = {**control_plane.env, "COREPLANE_AGENT__CONTROL_PLANE_URL": "http://127.0.0.1:1"}
    result = subprocess.run(
        [str(ROOT / ".venv/bin/coreplane"), "agent", "--once"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "heartbeat failed" in result.stderr
