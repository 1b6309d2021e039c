"""Console sessions: CSRF tokens, logins, users with roles; data for pages to show."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx

from tests.support.timing import until

TEST_PASSWORD = "correct horse battery staple"


def csrf_of(page: str) -> str:
    """The CSRF token of a console page's form."""
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def console_login(url: str, **form: str) -> tuple[httpx.Client, httpx.Response]:
    """(client, answer) of a console login with ``form`` (username/password or token)."""
    client = httpx.Client(base_url=url)
    return client, client.post("/login", data={"csrf": csrf_of(client.get("/login").text), **form})


def console_users(url: str, token: str, **roles: str) -> dict[str, httpx.Client]:
    """Logged-in console clients: "admin" (by the admin token) and one per ``name=role``,
    each user added through the Users form with TEST_PASSWORD."""
    admin, answer = console_login(url, token=token)
    assert answer.status_code == 303
    csrf = csrf_of(admin.get("/users").text)
    clients = {"admin": admin}
    for name, role in roles.items():
        form = {"csrf": csrf, "op": "add", "username": name, "password": TEST_PASSWORD, "role": role}
        added = admin.post("/users", data=form)
        assert added.status_code == 303, added.text
        clients[name], answer = console_login(url, username=name, password=TEST_PASSWORD)
        assert answer.status_code == 303
    return clients


def page_with(
    client: httpx.Client, path: str, needle: str, what: str, timeout_s: float = 20, **params: str
) -> str:
    """The body of GET ``path`` once it contains ``needle`` (polled until ``timeout_s``);
    ``what`` names what was awaited in the failure."""

    def page() -> str | None:
        body = client.get(path, params=params or None).text
        return body if needle in body else None

    return until(f"{what} ({needle!r} on {path})", page, timeout_s, every_s=0.2)


def pushed_with(ws, needle: str, what: str, timeout_s: float = 15) -> str:  # type: ignore[no-untyped-def]
    """The first message on the live socket ``ws`` that contains ``needle`` (earlier ones
    are read and dropped); ``what`` names what was awaited in the failure."""

    def message() -> str | None:
        text = ws.recv(timeout=1)
        return text if needle in text else None

    return until(f"{what} ({needle!r} pushed)", message, timeout_s, every_s=0, ignoring=(TimeoutError,))


def accepted(url: str, token: str, path: str, body: object) -> None:
    """POST ``body`` to the API and require 202 Accepted (a registration, an ingest)."""
    answer = httpx.post(f"{url}{path}", json=body, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 202, answer.text


def chart_points(metric: str, service: str, instance: str, minutes: int = 30) -> list[dict]:
    """One point a minute over the last ``minutes``, for a page's charts to draw."""
    now = datetime.now(UTC)
    return [
        {"metric_type": metric, "service_name": service, "value": float(i % 7),
         "timestamp": (now - timedelta(minutes=minutes - i)).isoformat(), "tags": {"instance": instance}}
        for i in range(minutes)
    ]  # fmt: skip
