"""Message schemas per exchange and routing key (``COREPLANE_MESSAGING__SCHEMAS``): a JSON
Schema (Draft 2020-12) or a pydantic model named ``"package.module:Model"``.

    [{"exchange": "orders", "routing_key": "order.created.*",
      "json_schema": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}},
     {"exchange": "orders", "routing_key": "order.#", "model": "shop.messages:Order"}]

``routing_key`` is an AMQP topic pattern (``*`` one word, ``#`` zero or more), whatever the
exchange's type. A message must pass every schema that matches it; one that none matches
passes. The publisher checks before sending, the consumer before handing a message over: the
same ``Schemas`` both ways, so what one refuses the other never sees.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controlplane import json_schemas
from controlplane.errors import Rejected, TooLarge

MAX_SCHEMAS = 200
SETTING = "COREPLANE_MESSAGING__SCHEMAS"


class SchemaEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    exchange: str = Field(max_length=200, description='The exchange\'s name ("" for the default one).')
    routing_key: str = Field("#", min_length=1, max_length=255, description="AMQP topic pattern.")
    json_schema: dict[str, Any] | None = None
    model: str | None = Field(None, pattern=r"^[\w.]+:[\w.]+$", description="package.module:Model")

    @model_validator(mode="after")
    def _one_form(self) -> SchemaEntry:
        if (self.json_schema is None) == (self.model is None):
            raise ValueError("give exactly one of json_schema and model")
        return self


@dataclass(frozen=True)
class Schema:
    """One loaded schema: where it applies and what checks a body."""

    exchange: str
    pattern: tuple[str, ...]
    validator: jsonschema.protocols.Validator | None
    model: type[BaseModel] | None
    source: str  # what an error names: the model's reference, or "schemas[i]"

    def applies(self, exchange: str, routing_key: str) -> bool:
        return exchange == self.exchange and topic_matches(self.pattern, tuple(routing_key.split(".")))

    def check(self, body: Any) -> None:
        if self.validator is not None:
            _check_json_schema(self.validator, body, self.source)
        elif self.model is not None:
            _check_model(self.model, body, self.source)


class Schemas:
    """The loaded schemas; a bad entry (a model that does not import, a schema that is not
    valid JSON Schema, too many, too big) is refused here, at start, naming it."""

    def __init__(self, entries: list[dict[str, Any]], *, field: str = SETTING) -> None:
        if len(entries) > MAX_SCHEMAS:
            raise TooLarge.field(
                f"{field}: {len(entries)} schemas, over the cap of {MAX_SCHEMAS}",
                field,
                "too many",
                kind="body",
            )
        self.schemas = [_load(raw, f"{field}[{i}]") for i, raw in enumerate(entries)]

    def matches(self, exchange: str, routing_key: str) -> list[Schema]:
        """The schemas a message sent to ``exchange`` with ``routing_key`` must pass."""
        return [s for s in self.schemas if s.applies(exchange, routing_key)]

    def check(self, exchange: str, routing_key: str, body: Any) -> None:
        """Rejected naming ``body.<path>`` and why when a matching schema refuses ``body``
        (decoded JSON; raw bytes are decoded first, and refused when they are not JSON)."""
        matching = self.matches(exchange, routing_key)
        if not matching:
            return
        if isinstance(body, bytes | bytearray | memoryview):
            body = _decoded(bytes(body), exchange, routing_key)
        for schema in matching:
            schema.check(body)


def topic_matches(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    """AMQP topic matching on words: ``*`` is exactly one word, ``#`` zero or more."""
    return _match(pattern, words)


@lru_cache(maxsize=4096)
def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        # Either # takes no more words, or it takes one and stays.
        return _match(rest, words) or (bool(words) and _match(pattern, words[1:]))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])


def _load(raw: Any, where: str) -> Schema:
    entry = json_schemas.entry(SchemaEntry, raw, where)
    pattern = tuple(entry.routing_key.split("."))
    if entry.json_schema is not None:
        check = json_schemas.validator(entry.json_schema, f"{where}.json_schema")
        return Schema(entry.exchange, pattern, check, None, where)
    assert entry.model is not None
    return Schema(entry.exchange, pattern, None, _import_model(entry.model, f"{where}.model"), entry.model)


def _import_model(reference: str, where: str) -> type[BaseModel]:
    module_name, _, attribute = reference.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise Rejected.field(
            f"{where}: {reference!r} cannot be imported: {type(exc).__name__}: {exc}", where, "cannot import",
            kind="body",
        ) from None  # fmt: skip
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise Rejected.field(
            f"{where}: {reference!r} is not a pydantic model (a BaseModel subclass)", where, "not a model",
            kind="body",
        )  # fmt: skip
    return found


def _decoded(raw: bytes, exchange: str, routing_key: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected.field(
            f"body: a schema applies to {exchange!r} / {routing_key!r}, and the body is not JSON: {exc}",
            "body", "not JSON", kind="body",
        ) from None  # fmt: skip


def _check_json_schema(validator: jsonschema.protocols.Validator, body: Any, source: str) -> None:
    error = json_schemas.first_error(validator, body, "body")
    if error is not None:
        field, reason = error
        raise Rejected.field(f"{field}: {reason} (schema {source})", field, reason, kind="body")


def _check_model(model: type[BaseModel], body: Any, source: str) -> None:
    try:
        model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        _refuse(list(err["loc"]), err["msg"], source)


def _refuse(path: list[Any], reason: str, source: str) -> None:
    field = json_schemas.field_name("body", path)
    raise Rejected.field(f"{field}: {reason} (schema {source})", field, reason, kind="body")
