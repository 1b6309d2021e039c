"""Console sessions: CSRF tokens, logins, users with roles."""

from __future__ import annotations

import re

import httpx

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
