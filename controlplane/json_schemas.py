"""JSON Schema (Draft 2020-12) checks shared by the areas that validate application
messages (messaging bodies, realtime frames): a schema is checked once when loaded, and a
refusal names the first field at fault the way a person would write it (``data.items[2].sku``)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import referencing
from pydantic import BaseModel, ValidationError

from controlplane.errors import Rejected, TooLarge

MAX_SCHEMA_BYTES = 64 * 1024
Entry = TypeVar("Entry", bound=BaseModel)


def entry(model: type[Entry], raw: Any, where: str) -> Entry:
    """One entry of a schemas setting, or Rejected naming its field (``where`` + the path)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = where + "".join(f".{p}" for p in err["loc"])
        raise Rejected.field(f"{path}: {err['msg']}", path, err["msg"], kind="body") from None


def validator(schema: dict[str, Any], where: str) -> jsonschema.protocols.Validator:
    """A validator for ``schema``, refused (naming ``where``) when too big or not valid."""
    size = len(json.dumps(schema, separators=(",", ":")).encode())
    if size > MAX_SCHEMA_BYTES:
        detail = f"{where} is {size} bytes of JSON, over the cap of {MAX_SCHEMA_BYTES}"
        raise TooLarge.field(detail, where, "too large", kind="body")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        detail = f"{where} is not valid JSON Schema (Draft 2020-12): {exc.message}"
        raise Rejected.field(detail, where, exc.message, kind="body") from None
    # An empty registry: a "$ref" to a remote URL fails instead of fetching it from the
    # network at every check; "format" is checked (an "email" that is not one fails).
    return jsonschema.Draft202012Validator(
        schema, registry=referencing.Registry(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def first_error(check: jsonschema.protocols.Validator, value: Any, root: str) -> tuple[str, str] | None:
    """(field, reason) of the most relevant error, the field under ``root``; None: valid."""
    try:
        error = jsonschema.exceptions.best_match(check.iter_errors(value))
    except referencing.exceptions.Unresolvable as exc:
        return root, f"a $ref in the schema cannot be resolved: {exc}"
    if error is None:
        return None
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        # A missing property is named itself ("data.text"), not its parent: that is the
        # field the sender has to add.
        path += [name for name in error.validator_value if name not in error.instance][:1]
    return field_name(root, path), error.message


def field_name(root: str, path: list[Any]) -> str:
    return root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
