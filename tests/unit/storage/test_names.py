"""Bucket names, object keys and prefixes: each rule refuses what it should, naming the
field and the reason, and lets the edge cases just inside it through."""

from __future__ import annotations

import pytest

from controlplane.errors import Rejected
from controlplane.storage import names


def _refusal(check, value: str, *args: str) -> dict:
    with pytest.raises(Rejected) as caught:
        check(value, *args)
    (error,) = caught.value.errors
    return error


@pytest.mark.parametrize(
    "name", ["abc", "a" * 63, "my-bucket", "logs.2026.eu", "0-starts-with-digit", "ends-with-9", "a.b-c.d"]
)
def test_valid_bucket_names_pass_unchanged(name):
    assert names.bucket_name(name) == name


@pytest.mark.parametrize(
    "name, reason",
    [
        ("ab", "bad bucket name"),  # too short
        ("a" * 64, "bad bucket name"),  # too long
        ("Upper", "bad bucket name"),
        ("under_score", "bad bucket name"),
        ("-leading", "bad bucket name"),
        ("trailing-", "bad bucket name"),
        (".dot", "bad bucket name"),
        ("a..b", "bad bucket name"),
        ("a.-b", "bad bucket name"),
        ("a-.b", "bad bucket name"),
        ("10.0.0.1", "bad bucket name"),
        ("spa ce", "bad bucket name"),
        ("", "bad bucket name"),
        ("buckets", "reserved bucket name"),
        ("shares", "reserved bucket name"),
        ("presign", "reserved bucket name"),
    ],
)
def test_bad_bucket_names_are_refused_naming_the_field(name, reason):
    error = _refusal(names.bucket_name, name, "name", "body")
    assert error == {"kind": "body", "index": None, "field": "name", "reason": reason}


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "dir/file.txt",
        "dir/sub/",  # a folder marker
        "k" * 1024,
        "é" * 512,  # 1,024 bytes of UTF-8
        "a.b/..c/d..",  # dots inside a segment are fine
        "with space/and+plus",
        "日本/語",
    ],
)
def test_valid_keys_pass_unchanged(key):
    assert names.object_key(key) == key


@pytest.mark.parametrize(
    "key, reason",
    [
        ("", "empty key"),
        ("k" * 1025, "key too long"),
        ("é" * 513, "key too long"),
        ("/etc/passwd", "absolute key"),
        ("/", "absolute key"),
        ("..", "path segment"),
        ("a/../b", "path segment"),
        ("a/./b", "path segment"),
        (".", "path segment"),
        ("a//b", "path segment"),
        ("../", "path segment"),
        ("a\\b", "backslash"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("a\x7fb", "control character"),
        ("bad\udc80", "bad encoding"),
    ],
)
def test_bad_keys_are_refused_naming_the_field(key, reason):
    error = _refusal(names.object_key, key)
    assert (error["field"], error["kind"], error["reason"]) == ("key", "path", reason)


@pytest.mark.parametrize("prefix", ["", "logs/", "logs/2026", "a", "p" * 1024])
def test_valid_prefixes_pass(prefix):
    assert names.key_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix, reason",
    [
        ("/logs", "path"),
        ("logs/../x", "path"),
        ("./x", "path"),
        ("p" * 1025, "too long"),
        ("a\\b", "backslash"),
        ("a\tb", "control character"),
    ],
)
def test_bad_prefixes_are_refused_naming_the_field(prefix, reason):
    error = _refusal(names.key_prefix, prefix)
    assert (error["field"], error["kind"], error["reason"]) == ("prefix", "query", reason)
