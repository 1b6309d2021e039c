"""Console users against a real `coreplane serve`: roles enforced on the server, CSRF on
every form, hashed passwords, login rate limiting, an audit entry for every change."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from tests.support.console import console_login, csrf_of

PASSWORD = "correct horse battery staple"


def _csrf(client: httpx.Client, page: str) -> str:
    return csrf_of(client.get(page).text)


def test_users_roles_csrf_rate_limit_and_audit(control_plane_sqlite, tmp_path):
    url, token, _log = control_plane_sqlite
    admin, answer = console_login(url, token=token)
    assert answer.status_code == 303
    assert admin.get("/users").status_code == 200
    csrf = _csrf(admin, "/users")
    for name, role in (("vera", "viewer"), ("otto", "operator")):
        added = admin.post("/users", data={"csrf": csrf, "op": "add", "username": name, "password": PASSWORD,
                                           "role": role})  # fmt: skip
        assert added.status_code == 303, added.text
    # A form without its CSRF token is refused, and nothing changes.
    forged = admin.post("/users", data={"op": "role", "username": "vera", "role": "admin"})
    assert forged.status_code == 403
    refused = admin.post("/users", data={"csrf": csrf, "op": "add", "username": "weak", "password": "short",
                                         "role": "viewer"})  # fmt: skip
    assert refused.status_code == 422 and "at least 12 characters" in refused.text

    viewer, answer = console_login(url, username="vera", password=PASSWORD)
    assert answer.status_code == 303
    home = viewer.get("/")
    assert home.status_code == 200 and 'href="/users"' not in home.text and "vera · viewer" in home.text
    assert viewer.get("/users").status_code == 403  # the page, and ...
    assert viewer.post("/users", data={"csrf": _csrf(viewer, "/"), "op": "role", "username": "vera",
                                       "role": "admin"}).status_code == 403  # ... a forged change  # fmt: skip

    # Five failures for one name, then even the right password waits.
    for _ in range(5):
        _, wrong = console_login(url, username="otto", password="not the password")
        assert wrong.status_code == 401
    _, limited = console_login(url, username="otto", password=PASSWORD)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0

    engine = sa.create_engine(f"sqlite:///{tmp_path}/store.db")
    with engine.connect() as conn:
        hashes = conn.execute(sa.text("SELECT password_hash FROM users")).scalars().all()
        audit = conn.execute(sa.text("SELECT actor, action, target FROM audit_log ORDER BY at")).all()
    engine.dispose()
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes) and len(hashes) == 2
    actions = [(a.action, a.target) for a in audit]
    assert ("user.create", "vera") in actions and ("user.create", "otto") in actions
    assert len([a for a in audit if a.action == "login.failed" and a.actor == "user:otto"]) == 5
    assert ("user.role", "vera") not in actions  # the forged and refused changes left no trace
    # API changes are audited too, and the log is readable by admins only.
    bearer = {"Authorization": f"Bearer {token}"}
    put = httpx.put(
        f"{url}/api/v1/settings/feature.flags", headers=bearer, json={"value": {"x": 1}, "version": 0}
    )
    assert put.status_code == 200
    log = httpx.get(f"{url}/api/v1/audit", headers=bearer, params={"action": "setting.replace"}).json()
    assert [(e["actor"], e["target"]) for e in log] == [("admin:admin", "feature.flags")]
    for client in (admin, viewer):
        client.close()
