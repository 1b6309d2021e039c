"""Console sessions against a real `coreplane serve`: kept in the store, so a logout, a
disable, a role change or a new password ends them at once (pages and open websockets),
and login limits that an attacker cannot race, spoof around, or turn on the real user."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import sqlalchemy as sa
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.console import TEST_PASSWORD, console_login, console_users, csrf_of
from tests.support.serve import private_serve
from tests.support.timing import until

NEW_PASSWORD = "a different horse, battery and staple"


def _store(tmp_path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{tmp_path}/store.db")


def _audit(tmp_path, action: str) -> list:
    engine = _store(tmp_path)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT actor, client FROM audit_log WHERE action = :a ORDER BY at"), {"a": action}
        ).all()
    engine.dispose()
    return rows


def _open_socket(stack: ExitStack, url: str, client: httpx.Client):  # type: ignore[no-untyped-def]
    headers = {"Cookie": f"coreplane_session={client.cookies['coreplane_session']}", "Origin": url}
    ws = stack.enter_context(connect(url.replace("http://", "ws://") + "/ws/console?page=overview", additional_headers=headers,
                 open_timeout=5))  # fmt: skip
    ws.recv(timeout=10)  # the catch-up render: the socket is open and serving
    return ws


def _closed_code(ws) -> int | None:  # type: ignore[no-untyped-def]
    """The close code once the server closed the socket (None while it is open)."""
    try:
        ws.recv(timeout=0.2)
    except TimeoutError:
        return None
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else -1
    return None


def _cookie_only(url: str, client: httpx.Client) -> httpx.Client:
    """A new client replaying ``client``'s session cookie as it is now."""
    return httpx.Client(base_url=url, cookies={"coreplane_session": client.cookies["coreplane_session"]})


def test_logout_disable_demote_and_new_password_end_open_sessions(control_plane_sqlite, tmp_path):
    url, token, _log = control_plane_sqlite
    clients = console_users(url, token, leo="operator", dee="operator", ada="admin", pat="operator")
    admin = clients["admin"]
    assert clients["ada"].get("/users").status_code == 200  # an admin, for now
    names = ("leo", "dee", "ada", "pat")
    stack = ExitStack()
    sockets = {name: _open_socket(stack, url, clients[name]) for name in (*names, "admin")}
    replays = {name: _cookie_only(url, clients[name]) for name in names}
    assert all(r.get("/").status_code == 200 for r in replays.values())

    leo = clients["leo"]
    assert leo.post("/logout", data={"csrf": csrf_of(leo.get("/").text)}).status_code == 303
    csrf = csrf_of(admin.get("/users").text)
    for form in ({"op": "disable", "username": "dee"}, {"op": "role", "username": "ada", "role": "viewer"},
                 {"op": "password", "username": "pat", "password": NEW_PASSWORD}):  # fmt: skip
        assert admin.post("/users", data={"csrf": csrf, **form}).status_code == 303

    for name in names:
        # The next request of the browser, and of anyone replaying its cookie, is refused.
        for client in (clients[name], replays[name]):
            answer = client.get("/")
            assert answer.status_code == 303 and answer.headers["location"] == "/login", name
    # The demoted admin's old cookie creates no admin.
    forged = replays["ada"].post("/users", data={"csrf": csrf, "op": "add", "username": "mallory",
                                                 "password": TEST_PASSWORD, "role": "admin"})  # fmt: skip
    assert forged.status_code in (303, 403)
    assert "mallory" not in admin.get("/users").text
    # Every one of their open sockets is closed by the server (a policy violation), within
    # a tick or so; the admin's, which heard the same ticks, stays open.
    codes: dict[str, int] = {}

    def closed() -> bool:
        for name in names:
            if name not in codes and (code := _closed_code(sockets[name])) is not None:
                codes[name] = code
        return len(codes) == len(names)

    until("the ended sessions' sockets closed", closed, timeout_s=15)
    assert codes == dict.fromkeys(names, 1008)
    assert _closed_code(sockets["admin"]) is None
    # The same people log in again (the new password, the new role); the old password is dead.
    assert console_login(url, username="pat", password=NEW_PASSWORD)[1].status_code == 303
    assert console_login(url, username="ada", password=TEST_PASSWORD)[1].status_code == 303
    assert console_login(url, username="dee", password=TEST_PASSWORD)[1].status_code == 401
    assert admin.get("/users").status_code == 200  # untouched by all of that
    stack.close()
    for client in [*clients.values(), *replays.values()]:
        client.close()


def test_parallel_wrong_passwords_get_at_most_the_limit_of_checks(control_plane_sqlite, tmp_path):
    url, token, _log = control_plane_sqlite
    console_users(url, token, otto="operator")["admin"].close()
    attackers = []
    for _ in range(30):
        client = httpx.Client(base_url=url, timeout=30)
        attackers.append((client, csrf_of(client.get("/login").text)))
    start = threading.Barrier(len(attackers))

    def guess(pair) -> int:  # type: ignore[no-untyped-def]
        client, csrf = pair
        start.wait()
        form = {"csrf": csrf, "username": "otto", "password": "not the password"}
        return client.post("/login", data=form).status_code

    with ThreadPoolExecutor(len(attackers)) as pool:
        statuses = list(pool.map(guess, attackers))
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses.count(401) <= 5 and statuses.count(401) + statuses.count(429) == 30, statuses
    assert len([r for r in _audit(tmp_path, "login.failed") if r.actor == "user:otto"]) <= 5
    for client, _ in attackers:
        client.close()


def test_rotating_x_forwarded_for_does_not_beat_the_address_limit(control_plane_sqlite, tmp_path):
    url, _token, _log = control_plane_sqlite
    client = httpx.Client(base_url=url)
    csrf = csrf_of(client.get("/login").text)
    statuses = []
    for i in range(25):  # a new name each time: only the per-address limit can stop this
        form = {"csrf": csrf, "username": f"guess{i}", "password": "not the password"}
        statuses.append(
            client.post("/login", data=form, headers={"X-Forwarded-For": f"10.0.0.{i}"}).status_code
        )
    assert statuses[:20] == [401] * 20 and statuses[20:] == [429] * 5, statuses
    failed = _audit(tmp_path, "login.failed")
    assert len(failed) == 20 and {r.client for r in failed} == {"127.0.0.1"}  # the peer, not the header
    client.close()


def test_a_configured_proxy_is_believed(tmp_path, services):
    proxies = {"server__trusted_proxies": '["127.0.0.0/8"]'}
    with private_serve(tmp_path, **proxies) as (url, _token, _log), httpx.Client(base_url=url) as client:
        form = {"csrf": csrf_of(client.get("/login").text), "token": "not the token"}
        assert client.post("/login", data=form, headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 401
        assert [r.client for r in _audit(tmp_path, "login.failed")] == ["203.0.113.9"]


def test_a_flood_from_one_address_does_not_lock_the_user_out_of_another(control_plane_sqlite, tmp_path):
    url, token, _log = control_plane_sqlite
    console_users(url, token, otto="operator")["admin"].close()
    elsewhere = httpx.Client(base_url=url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    csrf = csrf_of(elsewhere.get("/login").text)
    statuses = [
        elsewhere.post("/login", data={"csrf": csrf, "username": "otto", "password": "wrong"}).status_code
        for _ in range(8)
    ]
    assert statuses == [401] * 5 + [429] * 3, statuses
    # The attacker's address waits, even with the right password ...
    right = {"csrf": csrf, "username": "otto", "password": TEST_PASSWORD}
    slowed = elsewhere.post("/login", data=right)
    assert slowed.status_code == 429 and int(slowed.headers["Retry-After"]) > 0
    # ... while otto, from his own address, logs in at once.
    otto, answer = console_login(url, username="otto", password=TEST_PASSWORD)
    assert answer.status_code == 303, answer.text
    assert otto.get("/").status_code == 200
    assert {r.client for r in _audit(tmp_path, "login.failed")} == {"127.0.0.2"}
    for client in (elsewhere, otto):
        client.close()
