"""Message schemas: topic patterns, both schema forms, the field an error names, the caps and
the refusals at load."""

from __future__ import annotations

import pytest

from controlplane.errors import Rejected, TooLarge
from controlplane.messaging.validation import MAX_SCHEMAS, Schemas, topic_matches

ORDER_SCHEMA = {
    "type": "object",
    "required": ["id", "lines"],
    "properties": {
        "id": {"type": "integer"},
        "lines": {
            "type": "array",
            "items": {"type": "object", "properties": {"quantity": {"type": "integer", "minimum": 1}}},
        },
    },
}
MODEL = "tests.integration.messaging.schemas_models:Order"


def field_of(exc: pytest.ExceptionInfo[Rejected]) -> str:
    return exc.value.errors[0]["field"]


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("order.created", "order.created", True),
        ("order.created", "order.created.eu", False),
        ("order.*", "order.created", True),
        ("order.*", "order", False),
        ("order.*", "order.created.eu", False),
        ("order.#", "order", True),
        ("order.#", "order.created.eu", True),
        ("#", "", True),
        ("#", "anything.at.all", True),
        ("*.created.#", "order.created", True),
        ("*.created.#", "created", False),
        ("#.eu", "order.created.eu", True),
        ("#.eu", "order.created.us", False),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.#.b", "a.x.y.c", False),
    ],
)
def test_topic_patterns_match_as_rabbitmq_does(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(tuple(pattern.split(".")), tuple(key.split("."))) is expected


def test_json_schema_error_names_the_field_path() -> None:
    schemas = Schemas([{"exchange": "orders", "routing_key": "order.*", "json_schema": ORDER_SCHEMA}])
    schemas.check("orders", "order.created", {"id": 1, "lines": [{"quantity": 2}]})
    with pytest.raises(Rejected) as exc:
        schemas.check("orders", "order.created", {"id": 1, "lines": [{"quantity": 2}, {"quantity": 0}]})
    assert field_of(exc) == "body.lines[1].quantity"
    assert "minimum" in str(exc.value) or "less than" in str(exc.value)
    with pytest.raises(Rejected) as exc:
        schemas.check("orders", "order.created", {"id": "one", "lines": []})
    assert field_of(exc) == "body.id"


def test_a_missing_required_property_is_named() -> None:
    schemas = Schemas([{"exchange": "orders", "routing_key": "#", "json_schema": ORDER_SCHEMA}])
    with pytest.raises(Rejected) as exc:
        schemas.check("orders", "x", {"id": 1})
    assert field_of(exc) == "body.lines"
    assert "'lines' is a required property" in str(exc.value)


def test_pydantic_model_error_names_the_field_path() -> None:
    schemas = Schemas([{"exchange": "orders", "routing_key": "order.#", "model": MODEL}])
    schemas.check("orders", "order.created", {"id": 7, "lines": [{"sku": "a", "quantity": 1}]})
    with pytest.raises(Rejected) as exc:
        schemas.check("orders", "order.created", {"id": 7, "lines": [{"sku": "a", "quantity": 0}]})
    assert field_of(exc) == "body.lines[0].quantity"
    with pytest.raises(Rejected) as exc:
        schemas.check("orders", "order", {"id": 7, "lines": [{"sku": "a", "quantity": 1}], "extra": 1})
    assert field_of(exc) == "body.extra"


def test_only_matching_schemas_apply_and_every_match_must_pass() -> None:
    schemas = Schemas(
        [
            {"exchange": "orders", "routing_key": "order.created", "json_schema": {"type": "object"}},
            {"exchange": "orders", "routing_key": "order.*", "json_schema": {"required": ["id"]}},
        ]
    )
    assert len(schemas.matches("orders", "order.created")) == 2
    assert schemas.matches("payments", "order.created") == []
    schemas.check("payments", "order.created", "anything")  # no schema: passes
    schemas.check("orders", "order.shipped", {"id": 1})
    with pytest.raises(Rejected):
        schemas.check("orders", "order.created", {"no": "id"})  # the second schema refuses


def test_raw_bytes_are_decoded_and_non_json_is_refused_where_a_schema_applies() -> None:
    schemas = Schemas([{"exchange": "orders", "routing_key": "#", "json_schema": {"type": "object"}}])
    schemas.check("orders", "k", b'{"a": 1}')
    with pytest.raises(Rejected) as exc:
        schemas.check("orders", "k", b"\xff not json")
    assert field_of(exc) == "body"
    Schemas([]).check("orders", "k", b"\xff not json")


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        (
            {"exchange": "o", "model": "tests.integration.messaging.nowhere:Order"},
            "S[0].model",
            "cannot be imported",
        ),
        (
            {"exchange": "o", "model": "tests.integration.messaging.schemas_models:Nope"},
            "S[0].model",
            "cannot",
        ),
        (
            {"exchange": "o", "model": "tests.integration.messaging.schemas_models:NOT_A_MODEL"},
            "S[0].model",
            "not a pydantic model",
        ),
        (
            {"exchange": "o", "json_schema": {"type": "no-such-type"}},
            "S[0].json_schema",
            "not valid JSON Schema",
        ),
        ({"exchange": "o"}, "S[0]", "exactly one"),
        ({"exchange": "o", "model": MODEL, "json_schema": {}}, "S[0]", "exactly one"),
        ({"exchange": "o", "json_schema": {}, "queue": "q"}, "S[0].queue", "Extra inputs"),
    ],
)
def test_bad_entries_are_refused_at_load_naming_them(entry: dict, field: str, words: str) -> None:
    with pytest.raises(Rejected) as exc:
        Schemas([entry], field="S")
    assert field_of(exc) == field
    assert words in str(exc.value)


def test_caps_on_count_and_size() -> None:
    with pytest.raises(TooLarge):
        Schemas([{"exchange": "o", "json_schema": {}}] * (MAX_SCHEMAS + 1))
    Schemas([{"exchange": "o", "json_schema": {}}] * MAX_SCHEMAS)
    big = {"enum": ["x" * 1000] * 70}
    with pytest.raises(TooLarge) as exc:
        Schemas([{"exchange": "o", "json_schema": big}], field="S")
    assert field_of(exc) == "S[0].json_schema"


def test_a_remote_ref_is_never_fetched() -> None:
    schemas = Schemas([{"exchange": "o", "json_schema": {"$ref": "https://example.invalid/schema.json"}}])
    with pytest.raises(Rejected) as exc:
        schemas.check("o", "k", {})
    assert "$ref" in str(exc.value)
