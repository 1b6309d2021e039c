"""Realtime protocol test support: tokens a test signs itself (expired, forged), API
credentials by role, console-session sockets, close codes, a serve process a test can
signal."""

from __future__ import annotations

import asyncio
import json
import secrets
import tempfile
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from websockets.exceptions import ConnectionClosed

from controlplane.realtime import tokens
from tests.support.console import console_users
from tests.support.processes import coreplane_env, free_port, stop
from tests.support.realtime import Client, redis_url, ws_url
from tests.support.serve import ControlPlane, migrate, start_serve

T = TypeVar("T")
SCENARIO_S = 120.0  # no websocket scenario may hang a test run longer than this


def run(scenario: Awaitable[T], timeout_s: float = SCENARIO_S) -> T:
    """Run an async scenario from a plain test, bounded in time (no pytest-asyncio here)."""

    async def bounded() -> T:
        return await asyncio.wait_for(scenario, timeout_s)

    return asyncio.run(bounded())


def signed(secret: str, user: str, join: list[str], ttl_s: int) -> str:
    """A token signed with ``secret`` (the serve's ``server__session_secret``, or another
    one to forge it) living ``ttl_s`` seconds; a negative ``ttl_s`` gives one already expired.
    The default lifetime carries it because TokenRequest itself refuses a ttl under 10 s."""
    request = tokens.TokenRequest(user=user, join=join, publish=join)
    return tokens.issue(secret, request, default_ttl_s=ttl_s).token


async def close_code(client: Client, timeout: float = 15.0) -> int:
    """The code the server closes ``client`` with; frames read meanwhile go to its inbox."""
    return (await closed(client, timeout))[0]


async def closed(client: Client, timeout: float = 15.0) -> tuple[int, str]:
    """(code, reason) the server closes ``client`` with; frames read meanwhile go to its inbox."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            text = await asyncio.wait_for(client.ws.recv(), max(0.01, deadline - loop.time()))
            client.inbox.append(json.loads(text) if isinstance(text, str) else {"binary": text})
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, f"the connection dropped without a close frame: {exc!r}"
        return exc.rcvd.code, exc.rcvd.reason


async def refused_with(url: str, **kwargs: Any) -> tuple[int, str]:
    """(code, reason) a `/ws/rt` open is answered with (the server accepts, then closes)."""
    client = await Client.open(url, **kwargs)
    return await closed(client)


def api(cp: ControlPlane, token: str | None = None) -> httpx.Client:
    """An HTTP client on ``cp`` with ``token`` (the admin's by default) as its bearer."""
    return httpx.Client(base_url=cp.url, headers={"Authorization": f"Bearer {token or cp.token}"}, timeout=15)


def role_token(cp: ControlPlane, role: str) -> str:
    """A new API token of ``role`` (viewer, operator, admin), issued by the admin."""
    with api(cp) as admin:
        made = admin.post("/api/v1/tokens", json={"name": f"rt-{role}-{secrets.token_hex(3)}", "role": role})
    assert made.status_code == 201, made.text
    return made.json()["token"]


def console_sessions(cp: ControlPlane, **roles: str) -> dict[str, str]:
    """The console session cookie of each ``name=role`` user (logged in through the console)."""
    clients = console_users(cp.url, cp.token, **roles)
    try:
        return {name: clients[name].cookies["coreplane_session"] for name in roles}
    finally:
        for client in clients.values():
            client.close()


async def console_socket(cp: ControlPlane, cookie: str, origin: str | None = None) -> Client:
    """`/ws/rt` opened the way a console page opens it: the session cookie, and the page's
    Origin (the console's own unless ``origin`` says otherwise)."""
    return await Client.open(
        ws_url(cp),
        additional_headers={"Cookie": f"coreplane_session={cookie}"},
        origin=origin or cp.url,
    )


@contextmanager
def rt_process(**settings: str) -> Iterator[tuple[ControlPlane, Any]]:
    """(ControlPlane, Popen) of a `coreplane serve` on the Redis layer, for a test that
    signals the process itself (rt_serve hides it); stopped at the end if still running."""
    scratch = Path(tempfile.mkdtemp(prefix="coreplane-rt-"))
    port, token = free_port(), secrets.token_urlsafe(32)
    env = coreplane_env(
        False,
        database_url=f"sqlite:///{scratch}/store.db",
        admin_token=token,
        server__port=str(port),
        server__channel_layer_url=redis_url(),
        **settings,
    )
    migrate(env)
    log = scratch / "serve.log"
    process = start_serve(env, log)
    try:
        yield ControlPlane(f"http://127.0.0.1:{port}", token, env, log), process
    finally:
        stop(process)


async def open_in(cp: ControlPlane, token: str, *rooms: str) -> Client:
    """A client subscribed to ``rooms`` (each answered ``subscribed``)."""
    client = await Client.open(ws_url(cp, token))
    for name in rooms:
        answer = await client.call("subscribe", name)
        assert answer["type"] == "subscribed", answer
    return client
