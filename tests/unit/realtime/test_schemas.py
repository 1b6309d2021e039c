"""Message schemas per room glob (COREPLANE_REALTIME__SCHEMAS). Pure logic."""

from __future__ import annotations

import pytest

from controlplane.errors import Rejected, TooLarge
from controlplane.realtime.schemas import MAX_SCHEMAS, RoomSchemas

CHAT = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "maxLength": 5}}}
SMALL = {"type": "object", "maxProperties": 2}


def test_data_must_pass_every_schema_whose_glob_matches():
    schemas = RoomSchemas([{"room": "chat:*", "json_schema": CHAT}, {"room": "*", "json_schema": SMALL}])
    assert schemas.error("chat:1", {"text": "hi"}) is None
    assert schemas.error("chat:1", {"text": "hi", "a": 1, "b": 2}) == (
        "data", "{'text': 'hi', 'a': 1, 'b': 2} has too many properties")  # fmt: skip
    assert schemas.error("news", {"x": 1}) is None  # only "*" applies
    assert schemas.globs() == ["chat:*", "*"]


def test_an_error_names_the_field_at_fault():
    schemas = RoomSchemas([{"room": "chat:*", "json_schema": CHAT}])
    field, reason = schemas.error("chat:1", {"text": "too long"})
    assert field == "data.text" and "too long" in reason
    field, reason = schemas.error("chat:1", {})
    assert field == "data.text" and "'text' is a required property" in reason
    nested = {"type": "array", "items": {"type": "integer"}}
    assert RoomSchemas([{"room": "n", "json_schema": nested}]).error("n", [1, "x"])[0] == "data[1]"


def test_a_room_no_glob_matches_takes_any_json():
    schemas = RoomSchemas([{"room": "chat:*", "json_schema": CHAT}])
    assert schemas.error("chatroom", 42) is None  # "chat:*" needs the colon
    assert RoomSchemas([]).error("anything", {"a": [None]}) is None


def test_a_bad_schema_is_refused_at_load_naming_its_entry():
    with pytest.raises(Rejected) as caught:
        RoomSchemas([{"room": "a", "json_schema": CHAT}, {"room": "b", "json_schema": {"type": "nope"}}])
    assert caught.value.errors[0]["field"] == "COREPLANE_REALTIME__SCHEMAS[1].json_schema"
    assert "COREPLANE_REALTIME__SCHEMAS[1]" in str(caught.value)


@pytest.mark.parametrize(
    ("entry", "field"),
    [({"json_schema": CHAT}, "COREPLANE_REALTIME__SCHEMAS[0].room"),
     ({"room": "", "json_schema": CHAT}, "COREPLANE_REALTIME__SCHEMAS[0].room"),
     ({"room": "a"}, "COREPLANE_REALTIME__SCHEMAS[0].json_schema"),
     ({"room": "a", "json_schema": CHAT, "extra": 1}, "COREPLANE_REALTIME__SCHEMAS[0].extra")],
)  # fmt: skip
def test_a_malformed_entry_is_refused_naming_its_field(entry, field):
    with pytest.raises(Rejected) as caught:
        RoomSchemas([entry])
    assert caught.value.errors[0]["field"] == field


def test_too_many_schemas_are_refused():
    entries = [{"room": f"r{i}", "json_schema": SMALL} for i in range(MAX_SCHEMAS + 1)]
    with pytest.raises(TooLarge) as caught:
        RoomSchemas(entries)
    assert caught.value.errors[0]["field"] == "COREPLANE_REALTIME__SCHEMAS"
    assert len(RoomSchemas(entries[:MAX_SCHEMAS]).globs()) == MAX_SCHEMAS
