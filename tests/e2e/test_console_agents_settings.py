"""The console's agents and settings pages against a real `coreplane serve`: a real agent
watching the real Redis appears with its version, last heartbeat, spool and target
health; settings are admins' only, edited with the version they were read at (a stale
one is refused and changes nothing), with CSRF, JSON errors named by line, and an audit
entry; the server's configuration is shown without its secrets."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx

from agents.config import TargetConfig
from controlplane import __version__
from tests.support.agents import running_agent
from tests.support.console import console_login, csrf_of
from tests.support.services import require
from tests.support.timing import until

PASSWORD = "correct horse battery staple"


def _login(url: str, **form: str) -> httpx.Client:
    client, answer = console_login(url, **form)
    assert answer.status_code == 303
    return client


def _add_users(admin: httpx.Client, *users: tuple[str, str]) -> None:
    csrf = csrf_of(admin.get("/users").text)
    for name, role in users:
        added = admin.post("/users", data={"csrf": csrf, "op": "add", "username": name, "password": PASSWORD,
                                           "role": role})  # fmt: skip
        assert added.status_code == 303, added.text


def _agent_row(page: str, name: str) -> str:
    found = re.search(rf'<tr data-agent="{name}".*?</tr>', page, re.S)
    return found.group(0) if found else ""


def test_agents_page_shows_a_running_agent(control_plane_sqlite, services, tmp_path):
    require(services.redis.url, "redis")
    url, token, _log = control_plane_sqlite
    admin = _login(url, token=token)
    empty = admin.get("/agents")
    assert empty.status_code == 200 and "No agent has registered yet" in empty.text
    _add_users(admin, ("vera", "viewer"))
    viewer = _login(url, username="vera", password=PASSWORD)
    redis = TargetConfig(type="redis", name="cache", address=services.redis.url, role="primary", interval_s=1)
    address = f"{urlsplit(services.redis.url).hostname}:{urlsplit(services.redis.url).port}"
    with running_agent(url, token, tmp_path, redis, name="watcher", flush_interval_s=0.5):

        def filled_row() -> tuple[httpx.Response, str] | None:
            page = viewer.get("/agents")
            assert page.status_code == 200
            row = _agent_row(page.text, "watcher")
            # The row fills in from two requests in either order: the heartbeat (version, last
            # seen) and the first batch (target health, spool figures).
            if (f'data-target="cache/{address}" data-health="passing"' in row and "data-spool=" in row
                    and 'data-silent="no"' in row):  # fmt: skip
                return page, row
            return None

        page, row = until("the agent's row to fill in", filled_row, every_s=0.3)
    assert f'data-version="{__version__}"' in row and 'data-silent="no"' in row
    assert re.search(r"\d+ s ago", row), row  # last seen, with its age
    assert 'data-spool="0"' in row and 'data-push-errors="0"' in row  # reported by the agent itself
    assert re.search(r"1 target:\s+1 passing", row), row
    assert "No agent has registered yet" not in page.text
    # The block alone, for the page's 5 s refresh.
    block = viewer.get("/agents", headers={"HX-Request": "true"}).text
    assert block.lstrip().startswith('<section id="agents"') and "<h1>" not in block
    for client in (admin, viewer):
        client.close()


def test_each_agent_row_shows_its_own_figures(control_plane_sqlite):
    """The page reads every agent's latest figures and spool overflows in one query each;
    each row must still show that agent's own, newest ones."""
    url, token, _log = control_plane_sqlite
    admin_api = {"Authorization": f"Bearer {token}"}
    now = datetime.now(UTC)
    for name, spool, errors, dropped in (("north", 7, 2, (3, 5)), ("south", 1, 0, ())):
        answer = httpx.post(f"{url}/api/v1/agents/register", json={"name": name}, headers=admin_api)
        assert answer.status_code == 201, answer.text
        agent_api = {"Authorization": f"Bearer {answer.json()['token']}"}
        figures = [("coreplane_agent_spool_batches", spool), ("coreplane_agent_push_errors", errors)]
        batch = {
            "batch_id": f"{name}-1", "agent": name,
            "metrics": [  # an older value first: the page shows the newest
                {"metric_type": metric, "service_name": "coreplane_agent", "value": value + age,
                 "timestamp": (now - timedelta(seconds=age * 30)).isoformat(), "tags": {"agent": name}}
                for metric, value in figures for age in (1, 0)
            ],
            "events": [
                {"event_type": "agent.spool_overflow", "service_name": "coreplane_agent",
                 "timestamp": now.isoformat(), "details": {"agent": name, "dropped_batches": n}}
                for n in dropped
            ],
        }  # fmt: skip
        answer = httpx.post(f"{url}/api/v1/ingest", json=batch, headers=agent_api)
        assert answer.status_code == 202, answer.text
    page = _login(url, token=token).get("/agents").text
    north, south = _agent_row(page, "north"), _agent_row(page, "south")
    assert 'data-spool="7"' in north and 'data-push-errors="2"' in north and "8 batches dropped" in north
    assert 'data-spool="1"' in south and 'data-push-errors="0"' in south and "dropped" not in south


def _api_setting(url: str, token: str, setting_type: str) -> dict:
    answer = httpx.get(f"{url}/api/v1/settings/{setting_type}", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _put(url: str, token: str, setting_type: str, value: dict, version: int) -> None:
    answer = httpx.put(f"{url}/api/v1/settings/{setting_type}", headers={"Authorization": f"Bearer {token}"},
                       json={"value": value, "version": version})  # fmt: skip
    assert answer.status_code == 200, answer.text


def test_settings_admin_only_versioned_csrf_and_audited(control_plane_sqlite, services):
    url, token, log = control_plane_sqlite
    admin = _login(url, token=token)
    _add_users(admin, ("otto", "operator"), ("vera", "viewer"))
    for name in ("otto", "vera"):
        other = _login(url, username=name, password=PASSWORD)
        home = other.get("/")
        assert 'href="/settings"' not in home.text
        assert other.get("/settings").status_code == 403
        forged = other.post("/settings", data={"csrf": csrf_of(home.text), "setting_type": "feature.flags",
                                               "value": "{}", "version": "0"})  # fmt: skip
        assert forged.status_code == 403
        other.close()

    _put(url, token, "feature.flags", {"checkout": True}, 0)
    page = admin.get("/settings")
    assert page.status_code == 200
    assert 'data-setting="feature.flags" data-version="1"' in page.text
    assert "auth.admin_token" not in page.text and "console.session_secret" not in page.text  # credentials
    # The effective configuration hides every secret the serve was started with.
    secrets = [token, services.elasticsearch.password, services.s3.secret_key]
    secrets += [urlsplit(u).password for u in (services.rabbitmq.url, services.rabbitmq.management_url,
                                               services.postgres.url) if u]  # fmt: skip
    assert all(s and s not in page.text for s in secrets), "a secret is shown on /settings"
    assert 'data-config="COREPLANE_RABBITMQ__URL"' in page.text and "COREPLANE_SERVER__PORT" in page.text
    assert f"sqlite:///{log.parent}/store.db" in page.text  # a URL without a password, as written
    if services.rabbitmq.url:
        assert urlsplit(services.rabbitmq.url).hostname in page.text  # the host stays, the password goes
    csrf = csrf_of(page.text)

    edit = {"csrf": csrf, "setting_type": "feature.flags", "version": "1"}
    # Without the CSRF token: refused, nothing changes.
    assert admin.post("/settings", data={**edit, "csrf": "", "value": '{"x": 1}'}).status_code == 403
    # Someone else saves version 2 meanwhile: the edit of version 1 is refused, nothing changes.
    _put(url, token, "feature.flags", {"checkout": False}, 1)
    stale = admin.post("/settings", data={**edit, "value": '{"checkout": true, "search": true}'})
    assert stale.status_code == 409 and "Someone else changed" in stale.text and "version 2" in stale.text
    assert "&#34;search&#34;: true" in stale.text or '"search": true' in stale.text  # the draft is kept
    stored = _api_setting(url, token, "feature.flags")
    assert (stored["version"], stored["value"]) == (2, {"checkout": False})
    # Invalid JSON: 422 naming the line; not an object: 422.
    broken = admin.post("/settings", data={**edit, "version": "2", "value": '{\n  "checkout": true,\n}'})
    assert broken.status_code == 422 and "not valid JSON" in broken.text and "line 3" in broken.text
    assert admin.post("/settings", data={**edit, "version": "2", "value": "[1, 2]"}).status_code == 422
    # Rules are not edited here.
    rules = admin.post(
        "/settings", data={**edit, "setting_type": "policy.rules", "version": "0", "value": "{}"}
    )
    assert rules.status_code == 403 and 'href="/rules"' in rules.text
    assert _api_setting(url, token, "feature.flags")["version"] == 2

    saved = admin.post(
        "/settings", data={**edit, "version": "2", "value": '{"checkout": true, "search": true}'}
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/settings#setting-feature.flags"
    stored = _api_setting(url, token, "feature.flags")
    assert (stored["version"], stored["value"]) == (3, {"checkout": True, "search": True})
    assert stored["updated_by"] == "user:admin-token"
    created = admin.post("/settings", data={**edit, "setting_type": "ui.banner", "version": "0",
                                            "value": '{"text": "maintenance at 22:00"}'})  # fmt: skip
    assert created.status_code == 303
    twice = admin.post("/settings", data={**edit, "setting_type": "ui.banner", "version": "0", "value": "{}"})
    assert twice.status_code == 409

    audit = httpx.get(f"{url}/api/v1/audit", headers={"Authorization": f"Bearer {token}"},
                      params={"action": "setting.replace", "actor": "user:admin-token"}).json()  # fmt: skip
    assert [(e["target"], e["details"]) for e in audit] == [("ui.banner", {"version": 1}),
                                                            ("feature.flags", {"version": 3})]  # fmt: skip
    admin.close()
