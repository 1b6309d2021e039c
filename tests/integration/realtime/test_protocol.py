"""`/ws/rt`'s protocol against a real `coreplane serve` on the Redis layer: two clients talk
both ways with presence and join events; invalid frames are answered with error frames
naming the field and the connection lives on; a room's schema refuses bad data."""

from __future__ import annotations

import json

import pytest

from tests.support.realtime import Client, mint, room, rt_serve, ws_url
from tests.support.realtime_protocol import open_in, run

CHAT_SCHEMA = {
    "type": "object",
    "required": ["text"],
    "properties": {"text": {"type": "string", "maxLength": 200}},
}


@pytest.fixture(scope="module")
def cp():
    schemas = json.dumps([{"room": "chat:*", "json_schema": CHAT_SCHEMA}])
    with rt_serve(realtime__schemas=schemas) as found:
        yield found


def test_two_clients_exchange_messages_both_ways_with_presence(cp):
    name = room("duo")
    token_a, token_b = mint(cp, "ann", [name]), mint(cp, "bob", [name])

    async def scenario() -> None:
        a = await open_in(cp, token_a, name)
        b = await open_in(cp, token_b, name)
        joined = await a.expect("join", room=name, user="bob")
        assert joined["client"]

        sent = await a.call("publish", name, data={"text": "hi bob"})
        assert sent["type"] == "published" and sent["room"] == name, sent
        (got,) = await b.messages(name, 1)
        assert got["data"] == {"text": "hi bob"} and got["from"] == "ann" and got["seq"] == sent["seq"]

        back = await b.call("publish", name, data={"text": "hi ann"})
        assert back["type"] == "published" and back["seq"] == sent["seq"] + 1, back
        mine, theirs = await a.messages(name, 2)  # a gets its own message too, then bob's
        assert (mine["seq"], theirs["seq"]) == (sent["seq"], back["seq"])
        assert theirs["data"] == {"text": "hi ann"} and theirs["from"] == "bob"

        present = await a.call("presence", name)
        assert present["type"] == "presence", present
        assert sorted(m["user"] for m in present["members"]) == ["ann", "bob"]
        await a.close()
        await b.close()

    run(scenario())


def test_replies_carry_the_request_id(cp):
    name = room("ids")

    async def scenario() -> None:
        client = await Client.open(ws_url(cp, mint(cp, "ida", [name])))
        await client.ws.send(json.dumps({"type": "subscribe", "room": name, "id": "sub-1"}))
        assert (await client.expect("subscribed"))["id"] == "sub-1"
        await client.ws.send(json.dumps({"type": "publish", "room": name, "id": "p-9", "data": [1]}))
        published = await client.expect("published")
        assert published["id"] == "p-9" and published["seq"] >= 1
        await client.ws.send(json.dumps({"type": "ping", "id": 77}))
        assert (await client.expect("pong"))["id"] == 77
        await client.close()

    run(scenario())


async def _error_then_pong(client: Client, frame: str | bytes) -> dict:
    """The error frame ``frame`` gets; then a ping must still get its pong."""
    await client.ws.send(frame)
    error = await client.expect("error")
    pong = await client.call("ping")
    assert pong["type"] == "pong", f"the connection did not survive {frame!r}: {pong}"
    return error


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        ("{not json", "invalid_json", None),
        ("[1, 2]", "invalid_frame", None),
        ('{"type": "shout", "room": "a", "id": 1}', "invalid_frame", "type"),
        ('{"type": "subscribe", "room": "has space", "id": 2}', "invalid_frame", "room"),
        ('{"type": "subscribe", "room": "", "id": 3}', "invalid_frame", "room"),
        ('{"type": "subscribe", "id": 4}', "invalid_frame", "room"),
        ('{"type": "publish", "room": "free:x", "id": 5}', "invalid_frame", "data"),
        ('{"type": "subscribe", "room": "free:x", "since": -1, "id": 6}', "invalid_frame", "since"),
        ('{"type": "subscribe", "room": "free:x", "since": "3", "id": 7}', "invalid_frame", "since"),
        ('{"type": "history", "room": "free:x", "limit": true, "id": 8}', "invalid_frame", "limit"),
        ('{"type": "ping", "id": {"nested": 1}}', "invalid_frame", "id"),
        (b"\x00\x01binary", "invalid_frame", None),
    ],
)
def test_invalid_frames_get_error_frames_and_the_connection_survives(cp, frame, code, field):
    async def scenario() -> None:
        client = await Client.open(ws_url(cp, mint(cp, "val", ["free:*"])))
        error = await _error_then_pong(client, frame)
        assert error["code"] == code, error
        assert error.get("field") == field, error
        assert error["message"], error
        if isinstance(frame, str) and '"id": ' in frame and field != "id":
            assert error["id"] == json.loads(frame)["id"], "the error carries the request's id"
        await client.close()

    run(scenario())


def test_unsubscribe_and_double_subscribe_are_refused_by_code(cp):
    name = room("twice")

    async def scenario() -> None:
        client = await open_in(cp, mint(cp, "dup", [name]), name)
        again = await client.call("subscribe", name)
        assert (again["type"], again["code"], again["field"]) == ("error", "already_subscribed", "room")
        left = await client.call("unsubscribe", name)
        assert left["type"] == "unsubscribed"
        gone = await client.call("unsubscribe", name)
        assert (gone["type"], gone["code"], gone["field"]) == ("error", "not_subscribed", "room")
        assert (await client.call("ping"))["type"] == "pong"
        await client.close()

    run(scenario())


def test_a_rooms_schema_refuses_bad_data_naming_the_field_and_passes_good_data(cp):
    name = room("chat")

    async def scenario() -> None:
        client = await open_in(cp, mint(cp, "sam", [name]), name)
        missing = await client.call("publish", name, data={})
        assert (missing["type"], missing["code"]) == ("error", "invalid_data"), missing
        assert missing["field"] == "data.text" and "required" in missing["message"], missing
        wrong = await client.call("publish", name, data={"text": 5})
        assert (wrong["code"], wrong["field"]) == ("invalid_data", "data.text"), wrong
        ok = await client.call("publish", name, data={"text": "fine"})
        assert ok["type"] == "published", ok
        (got,) = await client.messages(name, 1)
        assert got["seq"] == ok["seq"] and got["data"] == {"text": "fine"}, "only the valid one was stored"
        await client.close()

    run(scenario())
