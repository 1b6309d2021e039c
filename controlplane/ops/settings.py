"""Checks on a settings document, shared by PUT /api/v1/settings/{type} and the console's
Settings page, so both refuse the same documents with the same reason."""

from __future__ import annotations

import json
from typing import Any

from controlplane.errors import Rejected

MAX_DEPTH = 32  # a settings document is configuration, not a data structure
MAX_VERSION_DIGITS = 18  # fits the store's integer column


def _depth(value: Any) -> int:
    """Nesting depth, without recursion (a document 3,000 levels deep must not overflow
    the stack of the process checking it)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def check_value(setting_type: str, value: dict) -> None:
    """Rejected when the document nests deeper than MAX_DEPTH or holds a NUL byte."""
    if _depth(value) > MAX_DEPTH:
        raise Rejected.field(
            f"the value of {setting_type!r} nests deeper than {MAX_DEPTH} levels: flatten it",
            "value",
            "too deep",
            kind="body",
        )
    if "\\u0000" in json.dumps(value):
        raise Rejected.field(
            f"the value of {setting_type!r} contains a NUL byte, which cannot be stored",
            "value",
            "NUL byte",
            kind="body",
        )


def parse_value(setting_type: str, text: str) -> dict:
    """The JSON object in ``text``, checked; Rejected saying where it is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Rejected.field(
            f"the value of {setting_type!r} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}",
            "value",
            "not JSON",
            kind="body",
        ) from None
    except RecursionError:
        raise Rejected.field(
            f"the value of {setting_type!r} nests deeper than {MAX_DEPTH} levels: flatten it",
            "value",
            "too deep",
            kind="body",
        ) from None
    if not isinstance(value, dict):
        raise Rejected.field(
            f"the value of {setting_type!r} must be a JSON object ({{…}})",
            "value",
            "not an object",
            kind="body",
        )
    check_value(setting_type, value)
    return value


def parse_version(text: str) -> int:
    """The version a form was read at: ASCII digits only ("²" is a digit to str.isdigit()
    but not to int())."""
    text = text.strip()
    if not (0 < len(text) <= MAX_VERSION_DIGITS and text.isascii() and text.isdigit()):
        raise Rejected.field(
            "the form lost the version it was read at: reload the page and edit again",
            "version",
            "not a version",
            kind="body",
        )
    return int(text)
