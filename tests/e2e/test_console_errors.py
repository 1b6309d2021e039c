"""Errors are translated once, at the edge, by where they happen: on a console URL a person
gets an HTML page in the site's layout (403, 404, 422, 500), under /api a program gets
RFC 9457 problem+json with the same status, from the same domain error."""

from __future__ import annotations

import sqlite3
import uuid

import httpx

from tests.support.console import console_users, csrf_of

PROBLEM = "application/problem+json"


def _html_page(answer: httpx.Response, status: int, says: str, *, signed_in: bool = True) -> None:
    """An error page with the site's layout (header, and the nav for a signed-in person)."""
    assert answer.status_code == status, answer.text[:500]
    assert answer.headers["content-type"].startswith("text/html"), answer.headers["content-type"]
    text = answer.text
    assert text.lstrip().startswith("<!doctype html>") and '<header class="top">' in text, text[:300]
    assert f'data-status="{status}"' in text and says in text, text[-1500:]
    assert ('<nav class="pages"' in text) is signed_in


def _problem(answer: httpx.Response, status: int, says: str) -> None:
    assert answer.status_code == status, answer.text[:500]
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["status"] == status and says in body["detail"], body


def test_console_errors_are_pages_and_api_errors_are_problems(control_plane_sqlite):
    url, token, log = control_plane_sqlite
    users = console_users(url, token, vera="viewer", olga="operator")
    admin, viewer, operator = users["admin"], users["vera"], users["olga"]
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
    missing = uuid.uuid4()

    # 403: a role that may not, or a form without its CSRF token; a credential's setting.
    _html_page(viewer.get("/settings"), 403, "needs the admin role")
    _html_page(
        admin.post("/settings", data={"setting_type": "x", "value": "{}", "version": "0"}), 403, "CSRF"
    )
    _problem(api.get("/api/v1/settings/auth.admin_token"), 403, "reserved for credentials")

    # 404: the same domain error (NotFound) on both sides, and a URL nothing serves.
    _html_page(viewer.get(f"/actions/{missing}"), 404, f"no action {missing}")
    _html_page(viewer.get("/no-such-page"), 404, "Not Found")
    _problem(api.get(f"/api/v1/actions/{missing}"), 404, f"no action {missing}")

    # 422: a path parameter that is not a UUID, and a use case's own refusal (Rejected).
    _html_page(viewer.get("/actions/not-an-id"), 422, "action_id")
    form = {"csrf": csrf_of(operator.get("/actions").text), "kind": "scale", "target": "tasks", "n": "abc"}
    _html_page(operator.post("/actions/preview", data=form), 422, "n must be a whole number")
    _problem(api.get("/api/v1/actions/not-an-id"), 422, "action_id")
    _problem(
        api.post("/api/v1/actions", json={"kind": "nope", "target": "tasks"}), 422, "unknown action kind"
    )

    # htmx asks for the page's block: the error comes as the fragment alone.
    fragment = viewer.get(f"/actions/{missing}", headers={"HX-Request": "true"})
    assert fragment.status_code == 404 and fragment.text.lstrip().startswith('<section id="error"')

    # 500: the store lost the actions table under the running server (a real fault, not a
    # contention the client could retry): a page for the console, a problem for the API.
    with sqlite3.connect(log.parent / "store.db") as store:
        store.execute("ALTER TABLE actions RENAME TO actions_gone")
    try:
        _html_page(viewer.get("/actions"), 500, "the server failed", signed_in=False)
        _problem(api.get("/api/v1/actions"), 500, "the server failed")
    finally:
        with sqlite3.connect(log.parent / "store.db") as store:
            store.execute("ALTER TABLE actions_gone RENAME TO actions")
    assert viewer.get("/actions").status_code == 200  # the same page, once the table is back
    for client in (*users.values(), api):
        client.close()
