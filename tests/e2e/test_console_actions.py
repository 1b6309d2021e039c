"""Triggering an action from the console, for real: an operator previews a cache
invalidation (the page says what will happen and who will do it), confirms, and watches
it succeed against the real Redis; a confirmation posted twice is one action; a viewer
has no form and the server refuses a forged request; a missing CSRF token is refused."""

from __future__ import annotations

import re
import uuid

import httpx
import redis

from agents.config import TargetConfig
from tests.support.agents import running_agent
from tests.support.console import console_login, csrf_of, page_with
from tests.support.services import require
from tests.support.timing import until

PASSWORD = "correct horse battery staple"


def _finished(client: httpx.Client, path: str) -> str | None:
    """The action's page once it succeeded; a failure ends the wait at once."""
    detail = client.get(path).text
    assert 'data-state="failed"' not in detail, detail
    return detail if 'data-state="succeeded"' in detail else None


def _login(url: str, **form: str) -> httpx.Client:
    client, answer = console_login(url, **form)
    assert answer.status_code == 303
    return client


def test_an_operator_previews_confirms_and_watches_an_invalidation(control_plane_sqlite, services, tmp_path):
    require(services.redis.url, "redis")
    url, token, _log = control_plane_sqlite
    admin = _login(url, token=token)
    csrf = csrf_of(admin.get("/users").text)
    for name, role in (("otto", "operator"), ("vera", "viewer")):
        admin.post(
            "/users", data={"csrf": csrf, "op": "add", "username": name, "password": PASSWORD, "role": role}
        )
    tag = f"products-{uuid.uuid4().hex[:6]}"
    cache = TargetConfig(type="redis", name="cache", address=services.redis.url, role="primary", interval_s=1)
    with running_agent(url, token, tmp_path, cache, name="console-agent"):
        operator = _login(url, username="otto", password=PASSWORD)
        page = page_with(operator, "/actions", '<option value="cache">', "the catalog to list the cache", 15)
        assert "Trigger an action" in page
        form = {"csrf": csrf_of(page), "kind": "cache.invalidate", "target": "cache", "tags": tag,
                "namespace": "default", "reason": "products repriced"}  # fmt: skip
        assert (
            operator.post("/actions/preview", data={k: v for k, v in form.items() if k != "csrf"}).status_code
            == 403
        )
        preview = operator.post("/actions/preview", data=form)
        assert preview.status_code == 200
        assert f"Bump the tag versions of {tag}" in preview.text and "agent(s) console-agent" in preview.text
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', preview.text))
        done = operator.post("/actions/confirm", data=hidden)
        assert done.status_code == 303
        again = operator.post("/actions/confirm", data=hidden)  # posted twice: one action
        assert again.headers["location"] == done.headers["location"]
        detail = until(
            "the invalidation to succeed", lambda: _finished(operator, done.headers["location"]), 15
        )
        assert "cache.flush" in detail and "user:otto" in detail and "products repriced" in detail
        assert redis.Redis.from_url(services.redis.url).get(f"coreplane:tag:{tag}") == b"1"

        viewer = _login(url, username="vera", password=PASSWORD)
        page = viewer.get("/actions").text
        assert (
            "Trigger an action" not in page and done.headers["location"] in page
        )  # sees it, cannot start one
        forged = viewer.post(
            "/actions/confirm", data={**hidden, "csrf": csrf_of(page), "idempotency_key": "x"}
        )
        assert forged.status_code == 403
        for client in (admin, operator, viewer):
            client.close()
