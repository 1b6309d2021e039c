"""The realtime routes against a real `coreplane serve` on the Redis layer: tokens (operator
only, refusals naming the field), server-side publish reaching a subscribed websocket, the
reads of rooms, members, history and stats, and a publish from application code in
another process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from controlplane.realtime.rooms import MAX_ROOMS_LISTED
from tests.support.problems import fields
from tests.support.realtime import mint, room, rt_serve
from tests.support.realtime_protocol import api, open_in, role_token, run

FRAME_MAX = 2048
CHAT_SCHEMA = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
TOKENS = "/api/v1/realtime/tokens"


def messages_path(name: str) -> str:
    return f"/api/v1/realtime/rooms/{name}/messages"


@pytest.fixture(scope="module")
def cp():
    schemas = json.dumps([{"room": "chat:*", "json_schema": CHAT_SCHEMA}])
    with rt_serve(realtime__schemas=schemas, realtime__frame_max_bytes=str(FRAME_MAX)) as found:
        yield found


@pytest.fixture(scope="module")
def viewer(cp):
    with api(cp, role_token(cp, "viewer")) as client:
        yield client


@pytest.fixture(scope="module")
def operator(cp):
    with api(cp, role_token(cp, "operator")) as client:
        yield client


# tokens


def test_an_operator_issues_a_token_that_opens_the_socket(cp, operator):
    name = room("tok")
    before = time.time()
    made = operator.post(TOKENS, json={"user": "u1", "join": [name], "publish": [], "ttl_s": 60})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["user"] == "u1" and before + 50 < body["expires_at"] < time.time() + 70, body

    async def scenario() -> None:
        client = await open_in(cp, body["token"], name)
        refused = await client.call("publish", name, data={"x": 1})
        assert refused["code"] == "forbidden", "publish: [] grants no publishing"
        await client.close()

    run(scenario())


def test_a_viewer_or_no_credential_gets_no_token(cp, viewer):
    request = {"user": "u2", "join": ["*"]}
    assert viewer.post(TOKENS, json=request).status_code == 403
    assert httpx.post(f"{cp.url}{TOKENS}", json=request, timeout=15).status_code == 401


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"user": "u", "join": ["chat:$x"]}, "join[0]"),
        ({"user": "u", "join": ["ok:*"], "publish": ["ok:*", "bad room"]}, "publish[1]"),
        ({"user": "u", "join": [], "colour": "red"}, "body.colour"),
        ({"user": "u", "join": [], "ttl_s": 5}, "body.ttl_s"),
        ({"user": "u", "join": [], "ttl_s": 86401}, "body.ttl_s"),
        ({"user": "", "join": []}, "body.user"),
        ({"join": []}, "body.user"),
        ({"user": "u", "join": ["r"] * 101}, "body.join"),
    ],
)
def test_a_bad_token_request_is_422_naming_the_field(operator, request_body, field):
    answer = operator.post(TOKENS, json=request_body)
    assert answer.status_code == 422, answer.text
    assert field in fields(answer), answer.text


# server-side publish


def test_a_publish_through_the_api_reaches_a_subscribed_client_with_its_seq(cp, operator, viewer):
    name = room("push")

    async def scenario() -> None:
        client = await open_in(cp, mint(cp, "sub", [name]), name)
        sent = operator.post(messages_path(name), json={"data": {"n": 1}, "sender": "billing"})
        assert sent.status_code == 201, sent.text
        assert sent.json() == {"room": name, "seq": 1}
        (got,) = await client.messages(name, 1)
        assert (got["seq"], got["data"], got["from"]) == (1, {"n": 1}, "billing"), got
        await client.close()

    run(scenario())
    assert viewer.post(messages_path(name), json={"data": 1}).status_code == 403


@pytest.mark.parametrize(
    ("path", "send", "status", "field"),
    [
        (messages_path("bad%20room"), {"json": {"data": 1}}, 422, "room"),
        (messages_path("x" * 129), {"json": {"data": 1}}, 422, "room"),
        (messages_path("free:big"), {"json": {"data": "x" * FRAME_MAX}}, 413, "data"),
        (messages_path("free:big"), {"content": b"[" * (FRAME_MAX + 5000)}, 413, None),
        (messages_path("free:nojson"), {"content": b"{not json"}, 400, None),
        (messages_path("free:x"), {"json": {"data": 1, "extra": 2}}, 422, "extra"),
        (messages_path("free:x"), {"json": {"sender": "s"}}, 422, "data"),
        (messages_path("chat:api"), {"json": {"data": {}}}, 422, "data.text"),
        (messages_path("chat:api"), {"json": {"data": {"text": 3}}}, 422, "data.text"),
    ],
    ids=[
        "space",
        "too-long",
        "data-over-cap",
        "body-over-cap",
        "not-json",
        "unknown-field",
        "no-data",
        "schema-missing",
        "schema-type",
    ],
)
def test_a_bad_publish_is_refused_naming_the_field(operator, path, send, status, field):
    answer = operator.post(path, **send)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.headers
    if field is not None:
        assert field in fields(answer), answer.text


def test_a_message_the_schema_accepts_is_published(operator):
    answer = operator.post(messages_path(room("chat")), json={"data": {"text": "ok"}})
    assert answer.status_code == 201, answer.text


# reads


def test_rooms_members_history_and_stats(cp, operator, viewer):
    name = room("read")

    async def scenario() -> None:
        client = await open_in(cp, mint(cp, "rea", [name]), name)
        for n in range(1, 6):
            assert operator.post(messages_path(name), json={"data": {"n": n}}).status_code == 201
        await client.messages(name, 5)

        listed = viewer.get("/api/v1/realtime/rooms", params={"limit": MAX_ROOMS_LISTED})
        assert listed.status_code == 200, listed.text
        mine = [r for r in listed.json() if r["room"] == name]
        assert mine and mine[0]["last_seq"] == 5 and mine[0]["present"] == 1, listed.text

        detail = viewer.get(f"/api/v1/realtime/rooms/{name}").json()
        assert detail["last_seq"] == 5 and [m["user"] for m in detail["members"]] == ["rea"], detail

        page = viewer.get(messages_path(name), params={"since": 2, "limit": 2})
        assert page.status_code == 200, page.text
        assert [(m["seq"], m["data"]["n"]) for m in page.json()] == [(3, 3), (4, 4)], page.text

        stats = viewer.get("/api/v1/realtime/stats").json()
        assert stats["connections"] >= 1 and stats["rooms"] >= 1, stats
        assert stats["limits"]["frame_max_bytes"] == FRAME_MAX and stats["schemas"] == ["chat:*"], stats
        assert "redis_url" not in stats["limits"], "no address (nor password) of Redis in the stats"
        await client.close()

    run(scenario())


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": -1}, "query.since"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 1001}, "query.limit"),
        ({"since": "x"}, "query.since"),
    ],
)
def test_history_bounds_are_422_naming_the_parameter(viewer, params, field):
    answer = viewer.get(messages_path("free:bounds"), params=params)
    assert answer.status_code == 422, answer.text
    assert field in fields(answer), answer.text


def test_reads_refuse_a_bad_room_name_and_list_limits(viewer):
    assert viewer.get("/api/v1/realtime/rooms/bad%20room").status_code == 422
    assert viewer.get(messages_path("bad%20room")).status_code == 422
    for limit in (0, MAX_ROOMS_LISTED + 1):
        answer = viewer.get("/api/v1/realtime/rooms", params={"limit": limit})
        assert answer.status_code == 422 and "query.limit" in fields(answer), answer.text


# application code


def test_application_code_in_another_process_publishes_to_a_subscribed_client(cp):
    name = room("app")
    code = textwrap.dedent(
        f"""
        from controlplane import realtime
        print(realtime.publish({name!r}, {{"from": "app"}}, sender="worker"))
        """
    )

    async def scenario() -> None:
        client = await open_in(cp, mint(cp, "lis", [name]), name)
        done = subprocess.run(
            [sys.executable, "-c", code], env=cp.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        seq = int(done.stdout.strip().splitlines()[-1])
        (got,) = await client.messages(name, 1)
        assert (got["seq"], got["data"], got["from"]) == (seq, {"from": "app"}, "worker"), got
        await client.close()

    run(scenario())


def test_application_code_is_held_to_the_rooms_schema(cp):
    code = "from controlplane import realtime; realtime.publish('chat:appbad', {'text': 1})"
    done = subprocess.run(
        [sys.executable, "-c", code], env=cp.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "data.text" in done.stderr, done.stderr[-2000:]


def test_a_client_socket_sees_the_api_publish_from_a_second_client_too(cp, operator):
    # Fan-out through the API to more than one socket: both members get the same seq.
    name = room("two")

    async def scenario() -> None:
        token = mint(cp, "two", [name])
        a, b = await open_in(cp, token, name), await open_in(cp, token, name)
        sent = operator.post(messages_path(name), json={"data": "hello"}).json()
        for client in (a, b):
            (got,) = await client.messages(name, 1)
            assert got["seq"] == sent["seq"] and got["data"] == "hello"
        await a.close()
        await b.close()

    run(scenario())
