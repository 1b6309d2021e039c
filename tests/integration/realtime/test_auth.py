"""Who may open `/ws/rt` and what a connection may do, against a real `coreplane serve` on
the Redis layer: tokens (none, forged, expired -> 4401; rooms the token lacks -> an error
frame, the connection stays) and console sessions (same origin only -> 4403)."""

from __future__ import annotations

import secrets

import pytest

from controlplane.realtime import protocol
from tests.support.realtime import Client, mint, room, rt_serve, ws_url
from tests.support.realtime_protocol import (
    close_code,
    console_sessions,
    console_socket,
    open_in,
    refused_with,
    run,
    signed,
)

SECRET = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def cp():
    # The test knows the session secret, so it can sign tokens the API would never issue.
    with rt_serve(server__session_secret=SECRET) as found:
        yield found


@pytest.fixture(scope="module")
def sessions(cp):
    return console_sessions(cp, vic="viewer", opa="operator")


def test_a_token_signed_with_the_servers_secret_opens_the_socket(cp):
    # The positive twin of the refusals below: the same signing with the right secret works.
    name = room("signed")

    async def scenario() -> None:
        client = await open_in(cp, signed(SECRET, "sig", [name], ttl_s=60), name)
        assert (await client.call("ping"))["type"] == "pong"
        await client.close()

    run(scenario())


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (None, "token"),
        (signed("not-the-servers-secret", "eve", ["*"], ttl_s=600), "signature"),
        (signed(SECRET, "old", ["*"], ttl_s=-60), "expired"),
        ("garbage.token.value", "signature"),
    ],
    ids=["no-token", "forged", "expired", "garbage"],
)
def test_a_socket_without_a_valid_token_is_closed_4401_saying_why(cp, token, why):
    code, reason = run(refused_with(ws_url(cp, token)))
    assert code == protocol.UNAUTHENTICATED
    assert why in reason, reason


def test_a_room_the_token_lacks_is_forbidden_and_the_connection_stays(cp):
    mine, other = room("mine"), room("other")

    async def scenario() -> None:
        client = await open_in(cp, mint(cp, "lim", [mine]), mine)
        for kind in ("subscribe", "presence", "history", "publish"):
            if kind == "publish":
                refused = await client.call(kind, other, data={"x": 1})
            else:
                refused = await client.call(kind, other)
            assert refused["type"] == "error", (kind, refused)
            assert (refused["code"], refused["field"]) == ("forbidden", "room"), (kind, refused)
            assert refused["id"] == client._ids, "the error carries the request's id"
        assert (await client.call("ping"))["type"] == "pong"
        await client.close()

    run(scenario())


def test_a_token_that_may_only_join_may_not_publish(cp):
    name = room("readonly")

    async def scenario() -> None:
        reader = await open_in(cp, mint(cp, "rea", [name], publish=[]), name)
        writer = await open_in(cp, mint(cp, "wri", [name]), name)
        refused = await reader.call("publish", name, data={"x": 1})
        assert (refused["type"], refused["code"], refused["field"]) == ("error", "forbidden", "room"), refused
        allowed = await writer.call("publish", name, data={"x": 2})
        assert allowed["type"] == "published", allowed
        (got,) = await reader.messages(name, 1)
        assert got["data"] == {"x": 2}, "the refused message was never stored nor sent"
        await reader.close()
        await writer.close()

    run(scenario())


def test_glob_grants_reach_matching_rooms_only(cp):
    tag = secrets.token_hex(4)

    async def scenario() -> None:
        client = await Client.open(ws_url(cp, mint(cp, "glo", [f"team{tag}:*"])))
        assert (await client.call("subscribe", f"team{tag}:a"))["type"] == "subscribed"
        refused = await client.call("subscribe", f"teamx{tag}:a")
        assert refused["code"] == "forbidden", refused
        await client.close()

    run(scenario())


def test_a_console_viewer_joins_any_room_but_may_not_publish(cp, sessions):
    name = room("console")

    async def scenario() -> None:
        viewer = await console_socket(cp, sessions["vic"])
        assert (await viewer.call("subscribe", name))["type"] == "subscribed"
        refused = await viewer.call("publish", name, data={"from": "viewer"})
        assert (refused["type"], refused["code"], refused["field"]) == ("error", "forbidden", "room"), refused
        assert (await viewer.call("ping"))["type"] == "pong"
        await viewer.close()

    run(scenario())


def test_a_console_operator_publishes_as_its_console_user(cp, sessions):
    name = room("console")

    async def scenario() -> None:
        viewer = await console_socket(cp, sessions["vic"])
        assert (await viewer.call("subscribe", name))["type"] == "subscribed"
        operator = await console_socket(cp, sessions["opa"])
        sent = await operator.call("publish", name, data={"note": "from the console"})
        assert sent["type"] == "published", sent
        (got,) = await viewer.messages(name, 1)
        assert got["from"] == "console:opa" and got["seq"] == sent["seq"], got
        await viewer.close()
        await operator.close()

    run(scenario())


def test_a_console_session_from_a_foreign_origin_is_closed_4403(cp, sessions):
    async def scenario() -> tuple[int, int]:
        foreign = await console_socket(cp, sessions["opa"], origin="http://evil.example")
        no_session = await Client.open(ws_url(cp), origin=cp.url)
        return await close_code(foreign), await close_code(no_session)

    foreign, no_session = run(scenario())
    assert foreign == protocol.FORBIDDEN_ORIGIN
    assert no_session == protocol.UNAUTHENTICATED, "a same-origin page without a session is no user"


def test_a_forged_session_cookie_is_no_session(cp):
    async def scenario() -> int:
        client = await console_socket(cp, "forged-cookie-value")
        return await close_code(client)

    assert run(scenario()) == protocol.UNAUTHENTICATED
