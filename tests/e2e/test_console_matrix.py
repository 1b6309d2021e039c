"""Every console page answers 200 to its role and 403 to a lower one (and sends a visitor
without a session to the login page); every POST form on every page is refused without
its CSRF token. The page table must name every console page the app serves, so a new
page cannot skip this test."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

from controlplane.users import RANK
from tests.support.console import console_users, csrf_of

# page -> the lowest role that may open it
PAGES = {
    "/": "viewer",
    "/services": "viewer",
    "/explore": "viewer",
    "/events": "viewer",
    "/actions": "viewer",
    "/rules": "viewer",
    "/agents": "viewer",
    "/tasks": "viewer",
    "/tasks/workers": "viewer",
    "/tasks/queues": "viewer",
    "/tasks/dead-letters": "viewer",
    "/tasks/analytics": "viewer",
    "/tasks/workflows": "viewer",
    "/tasks/schedules": "viewer",
    "/messaging": "viewer",
    "/messaging/topology": "viewer",
    "/messaging/dead-letters": "viewer",
    "/realtime": "viewer",
    "/storage": "viewer",
    "/users": "admin",
    "/settings": "admin",
}
# POST routes -> the lowest role that may use them (checked before anything else)
POSTS = {
    "/actions/preview": "operator",
    "/actions/confirm": "operator",
    "/rules": "admin",
    "/rules/preview": "operator",
    "/tasks/schedules": "operator",
    "/messaging/operations/preview": "operator",
    "/messaging/operations/confirm": "operator",
    "/messaging/dead-letters/preview": "operator",
    "/messaging/dead-letters/confirm": "operator",
    "/storage": "operator",
    "/users": "admin",
    "/settings": "admin",
}


def _console_routes() -> tuple[set[str], set[str]]:
    """(GET pages without path parameters, POST paths) of every console module."""
    from console.routes import MODULES

    pages, posts = set(), set()
    for route in (r for module in MODULES for r in module.router.routes):
        path, methods = getattr(route, "path", ""), getattr(route, "methods", None) or set()
        if "GET" in methods and "{" not in path and path != "/login":
            pages.add(path)
        if "POST" in methods and "{" not in path and path not in ("/login", "/logout"):
            posts.add(path)
    return pages, posts


class _Forms(HTMLParser):
    """Every <form method=post> with its named fields (first value of each)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self._current: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method", "get").lower() == "post":
            self._current = {}
            self.forms.append((a.get("action", ""), self._current))
        elif self._current is not None and tag in ("input", "select", "textarea") and a.get("name"):
            self._current.setdefault(a["name"], a.get("value", "x") or "x")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


@pytest.fixture
def sessions(control_plane_sqlite):  # type: ignore[no-untyped-def]
    url, token, _log = control_plane_sqlite
    users = console_users(url, token, olga="operator", viktor="viewer")
    clients = {"admin": users["admin"], "operator": users["olga"], "viewer": users["viktor"]}
    yield url, clients
    for client in clients.values():
        client.close()


def test_the_tables_name_every_console_page_and_form():
    pages, posts = _console_routes()
    assert pages == set(PAGES), "add the new page to PAGES with its lowest role"
    assert posts == set(POSTS), "add the new form's route to POSTS with its lowest role"


def test_every_page_answers_its_role_and_refuses_a_lower_one(sessions):
    url, clients = sessions
    anonymous = httpx.Client(base_url=url)
    for path, lowest in PAGES.items():
        assert anonymous.get(path).headers.get("location") == "/login", path
        for role, client in clients.items():
            status = client.get(path).status_code
            expected = 200 if RANK[role] >= RANK[lowest] else 403
            assert status == expected, f"{path} as {role}: {status}, expected {expected}"
    for path, lowest in POSTS.items():
        for role, client in clients.items():
            if RANK[role] < RANK[lowest]:
                csrf = csrf_of(client.get("/").text)
                refused = client.post(path, data={"csrf": csrf})
                assert refused.status_code == 403, f"POST {path} as {role}: {refused.status_code}"
    anonymous.close()


def test_every_form_is_refused_without_its_csrf_token(sessions):
    _url, clients = sessions
    admin = clients["admin"]
    seen = set()
    for path in PAGES:
        parser = _Forms()
        parser.feed(admin.get(path).text)
        for action, fields in parser.forms:
            assert "csrf" in fields, f"the form posting to {action} on {path} has no CSRF field"
            without = {k: v for k, v in fields.items() if k != "csrf"}
            answer = admin.post(action or path, data=without)
            assert answer.status_code == 403, f"{action} on {path} without CSRF: {answer.status_code}"
            assert re.search(r"CSRF", answer.text), answer.text[:300]
            seen.add(action or path)
    # the forms an admin sees cover every POST route but the operator-only previews' confirm step
    assert {"/users", "/actions/preview", "/logout"} <= seen, seen
