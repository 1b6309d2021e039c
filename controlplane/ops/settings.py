"""Replacing a settings document: the one use case behind PUT /api/v1/settings/{type} and
the console's Settings page, so both refuse the same documents, with the same reason and
the same domain error. Session first, never commits."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.errors import Conflict, Forbidden, Rejected
from controlplane.store.models import InfrastructureSetting
from controlplane.store.settings_store import put_setting

# Credentials kept in the same table; never served, shown or replaced as settings.
RESERVED_PREFIXES = ("auth.", "console.")
RULES_PREFIX = "policy."  # the rules: replaced through controlplane/ops/rules.py, which checks them
SETTING_TYPE = re.compile(r"^[a-z0-9_.\-]{1,50}$")
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


def reserved(setting_type: str) -> bool:
    """True for a credential's row: never listed, read or replaced as a setting."""
    return setting_type.startswith(RESERVED_PREFIXES)


def check_type(setting_type: str) -> None:
    """Rejected for a malformed name; Forbidden for a credential, and for the rules (read
    and replaced through controlplane/ops/rules.py, which checks them)."""
    if not SETTING_TYPE.match(setting_type):
        raise Rejected.field(
            "a setting type is 1 to 50 characters: lower-case letters, digits, '.', '_' or '-'",
            "setting_type",
            "invalid name",
            kind="path",
        )
    if reserved(setting_type):
        raise Forbidden(f"{setting_type!r} is reserved for credentials: it is not a setting to read or edit")
    if setting_type.startswith(RULES_PREFIX):
        raise Forbidden(
            f"{setting_type!r} holds rules: edit them on the Rules page (/rules) or through /api/v1/rules, "
            "which check them"
        )


def replace_setting(
    session: Session,
    *,
    setting_type: str,
    value: dict,
    expected_version: int,
    actor: str,
    updated_by: str,
    now: datetime,
    client: str | None = None,
) -> InfrastructureSetting:
    """Replace one document if it is still at ``expected_version`` (0 creates it); audited.
    Conflict when someone saved in between, or created it at the same moment; the session
    stays usable either way (a savepoint), so the caller can still answer from it."""
    check_type(setting_type)
    check_value(setting_type, value)
    return put_audited(session, setting_type=setting_type, value=value, expected_version=expected_version,
                       action="setting.replace", actor=actor, updated_by=updated_by, now=now,
                       client=client)  # fmt: skip


def put_audited(
    session: Session,
    *,
    setting_type: str,
    value: dict,
    expected_version: int,
    action: str,
    actor: str,
    updated_by: str,
    now: datetime,
    client: str | None,
) -> InfrastructureSetting:
    """``put_document``, then its audit row (``action``, with the new version): what every
    checked replace (a setting, the rules) ends with."""
    row = put_document(session, setting_type=setting_type, value=value, expected_version=expected_version,
                       updated_by=updated_by, now=now)  # fmt: skip
    audit.record(session, actor=actor, action=action, target=setting_type,
                 details={"version": row.version}, client=client)  # fmt: skip
    return row


def put_document(
    session: Session, *, setting_type: str, value: dict, expected_version: int, updated_by: str, now: datetime
) -> InfrastructureSetting:
    """The store's versioned replace inside a savepoint: a stale version or a concurrent
    first write is a Conflict, and the session stays usable for the caller's answer."""
    try:
        with session.begin_nested():
            return put_setting(session, setting_type=setting_type, value=value,
                               expected_version=expected_version, updated_by=updated_by, now=now)  # fmt: skip
    except IntegrityError:
        raise Conflict(f"{setting_type!r} was written concurrently: GET it and retry") from None
