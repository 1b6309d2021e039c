"""The `/ws/rt` wire protocol: what a client frame may be, and the frames the server writes.
Pure logic, no server."""

from __future__ import annotations

import json

import pytest

from controlplane.realtime import protocol
from controlplane.realtime.protocol import FrameError, parse


def _refused(frame: object) -> FrameError:
    text = frame if isinstance(frame, str) else json.dumps(frame)
    with pytest.raises(FrameError) as caught:
        parse(text)
    return caught.value


def test_a_publish_frame_keeps_its_id_room_and_data():
    frame = parse(json.dumps({"type": "publish", "room": "chat:1", "id": "a-1", "data": {"t": [1, 2]}}))
    assert (frame.type, frame.room, frame.id, frame.data) == ("publish", "chat:1", "a-1", {"t": [1, 2]})
    assert (frame.since, frame.limit) == (None, None)


def test_subscribe_and_history_carry_since_and_limit():
    frame = parse(json.dumps({"type": "history", "room": "r", "id": 7, "since": 0, "limit": 50}))
    assert (frame.id, frame.since, frame.limit) == (7, 0, 50)
    assert parse(json.dumps({"type": "subscribe", "room": "r", "since": 12})).since == 12


def test_a_ping_needs_no_room():
    frame = parse('{"type": "ping", "id": 3}')
    assert (frame.type, frame.room, frame.id) == ("ping", None, 3)


@pytest.mark.parametrize("text", ["{", "not json", ""])
def test_text_that_is_not_json_is_invalid_json(text):
    error = _refused(text)
    assert (error.code, error.field, error.frame_id) == ("invalid_json", None, None)


@pytest.mark.parametrize("value", [[1, 2], "ping", 3, None])
def test_json_that_is_not_an_object_is_an_invalid_frame(value):
    error = _refused(json.dumps(value))
    assert (error.code, error.field) == ("invalid_frame", None)


@pytest.mark.parametrize("frame_id", [True, 1.5, {"a": 1}, [1], "x" * 65])
def test_an_id_that_is_not_a_short_string_or_integer_is_refused_naming_id(frame_id):
    error = _refused({"type": "ping", "id": frame_id})
    assert (error.code, error.field, error.frame_id) == ("invalid_frame", "id", None)


def test_an_id_of_64_characters_is_kept():
    assert parse(json.dumps({"type": "ping", "id": "x" * 64})).id == "x" * 64


@pytest.mark.parametrize("kind", [None, "join", "PING", 1])
def test_an_unknown_type_is_refused_naming_type_and_keeping_the_id(kind):
    error = _refused({"type": kind, "id": "q"})
    assert (error.code, error.field, error.frame_id) == ("invalid_frame", "type", "q")


@pytest.mark.parametrize("room", [None, "", "a b", "x" * 129, "chat/1", 5, "é"])
@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe", "publish", "presence", "history"])
def test_every_type_but_ping_needs_a_valid_room(kind, room):
    frame = {"type": kind, "id": 9, "data": 1}
    if room is not None:
        frame["room"] = room
    error = _refused(frame)
    assert (error.code, error.field, error.frame_id) == ("invalid_frame", "room", 9)


def test_the_longest_room_name_passes():
    assert parse(json.dumps({"type": "subscribe", "room": "a" * 128})).room == "a" * 128


def test_a_publish_without_data_is_refused_naming_data():
    error = _refused({"type": "publish", "room": "r", "id": 1})
    assert (error.code, error.field, error.frame_id) == ("invalid_frame", "data", 1)


def test_a_publish_of_null_data_is_a_message():
    assert parse('{"type": "publish", "room": "r", "data": null}').data is None


@pytest.mark.parametrize("name", ["since", "limit"])
@pytest.mark.parametrize("value", [-1, 1.5, "3", True])
def test_since_and_limit_are_whole_numbers(name, value):
    error = _refused({"type": "history", "room": "r", "id": "h", name: value})
    assert (error.code, error.field, error.frame_id) == ("invalid_frame", name, "h")


def test_an_error_frame_is_json_with_its_code_field_and_id():
    text = protocol.error_frame(FrameError("forbidden", "no «entry»", "room", "x1"))
    assert json.loads(text) == {"type": "error", "code": "forbidden", "message": "no «entry»",
                                "field": "room", "id": "x1"}  # fmt: skip


def test_an_error_frame_leaves_out_a_missing_field_and_id():
    assert json.loads(protocol.error_frame(FrameError("rate_limited", "slow down"))) == {
        "type": "error", "code": "rate_limited", "message": "slow down"}  # fmt: skip


def test_a_reply_carries_the_request_id_when_there_is_one():
    assert json.loads(protocol.reply("published", 4, room="r", seq=2)) == {
        "type": "published", "room": "r", "seq": 2, "id": 4}  # fmt: skip
    assert json.loads(protocol.reply("pong", None)) == {"type": "pong"}


@pytest.mark.parametrize("data", [{"text": 'héllo "q"'}, [1, None, True], "s", 0, None, {"n": {"m": []}}])
def test_a_message_frame_embeds_the_data_json_as_given(data):
    data_json = protocol.dumps(data)
    text = protocol.message_frame('room"x', 17, data_json, "ann", 1700000000.123456)
    assert data_json in text  # not re-serialized: the hub writes it once for every member
    assert json.loads(text) == {"type": "message", "room": 'room"x', "seq": 17, "from": "ann",
                                "ts": 1700000000.123456, "data": data}  # fmt: skip


def test_a_message_from_the_server_has_a_null_sender():
    assert json.loads(protocol.message_frame("r", 1, "{}", None, 0.0))["from"] is None
