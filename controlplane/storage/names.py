"""What a bucket name and an object key may be, checked before anything reaches the
server, so a bad one is a 422 naming the field and stores nothing.

Bucket names follow S3's rules (3 to 63 characters of lower-case letters, digits, hyphens and
dots, starting and ending with a letter or digit, no ``..``, not an IP address). Keys are
at most 1,024 bytes of UTF-8; coreplane also refuses what would make a key a path trick or
unprintable: an absolute key (``/x``), a ``.`` or ``..`` segment, an empty segment (``a//b``),
a backslash, and control characters."""

from __future__ import annotations

import re

from controlplane.errors import Rejected

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
KEY_MAX_BYTES = 1024
PREFIX_MAX_BYTES = KEY_MAX_BYTES
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The API's fixed paths under /api/v1/storage/: a bucket by one of these names would make
# /storage/{bucket}/... ambiguous with them.
RESERVED = frozenset({"buckets", "shares", "mirrors", "drills", "analytics", "presign"})


def bucket_name(name: str, field: str = "bucket", kind: str = "path") -> str:
    """``name`` when S3 would take it as a bucket name; otherwise Rejected naming ``field``."""
    if not BUCKET_RE.match(name):
        raise Rejected.field(
            f"bucket name {name[:80]!r} is not valid: 3-63 characters of lower-case letters, digits, "
            "'-' and '.', starting and ending with a letter or digit",
            field,
            "bad bucket name",
            kind,
        )
    if name in RESERVED:
        raise Rejected.field(
            f"bucket name {name!r} is reserved by coreplane's API ({', '.join(sorted(RESERVED))})",
            field,
            "reserved bucket name",
            kind,
        )
    if ".." in name or ".-" in name or "-." in name or _IP_RE.match(name):
        raise Rejected.field(
            f"bucket name {name!r} is not valid: no '..', '.-' or '-.', and not an IP address",
            field,
            "bad bucket name",
            kind,
        )
    return name


def object_key(key: str, field: str = "key", kind: str = "path") -> str:
    """``key`` when it is a key coreplane stores; otherwise Rejected naming ``field``."""
    size = len(key.encode("utf-8", "surrogatepass"))
    if not key:
        raise Rejected.field("the object key is empty", field, "empty key", kind)
    if size > KEY_MAX_BYTES:
        raise Rejected.field(
            f"the object key is {size} bytes of UTF-8; the most is {KEY_MAX_BYTES}",
            field,
            "key too long",
            kind,
        )
    _no_tricks(key, field, kind)
    if key.startswith("/"):
        raise Rejected.field(
            f"object key {key[:80]!r} is absolute: drop the leading '/'", field, "absolute key", kind
        )
    segments = key.split("/")
    inner = segments[:-1] if key.endswith("/") else segments  # "dir/" names a folder marker
    if any(s in ("", ".", "..") for s in inner):
        raise Rejected.field(
            f"object key {key[:80]!r} has an empty, '.' or '..' segment", field, "path segment", kind
        )
    return key


def key_prefix(prefix: str, field: str = "prefix", kind: str = "query") -> str:
    """A listing or rule prefix: like a key, but empty is fine and it may end anywhere."""
    if not prefix:
        return prefix
    size = len(prefix.encode("utf-8", "surrogatepass"))
    if size > PREFIX_MAX_BYTES:
        raise Rejected.field(
            f"the prefix is {size} bytes; the most is {PREFIX_MAX_BYTES}", field, "too long", kind
        )
    _no_tricks(prefix, field, kind)
    if prefix.startswith("/") or any(s in (".", "..") for s in prefix.split("/")[:-1]):
        raise Rejected.field(
            f"prefix {prefix[:80]!r} is absolute or has a '.' or '..' segment", field, "path", kind
        )
    return prefix


def _no_tricks(text: str, field: str, kind: str) -> None:
    if _CONTROL.search(text):
        raise Rejected.field(f"{field} holds a control character", field, "control character", kind)
    if "\\" in text:
        raise Rejected.field(f"{field} holds a backslash: use '/' between segments", field, "backslash", kind)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Rejected.field(f"{field} is not valid UTF-8", field, "bad encoding", kind) from None
