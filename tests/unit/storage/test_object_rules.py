"""The object rules that need no server: Range headers against a size, user metadata caps,
SSE-C keys, and the encryption an answer's headers say."""

from __future__ import annotations

import base64
import threading
import time
from types import SimpleNamespace

import pytest
from minio.datatypes import Object

from controlplane.errors import Rejected, TooLarge
from controlplane.storage import objects
from controlplane.storage.objects import byte_range


@pytest.mark.parametrize(
    "header, size, expected",
    [
        (None, 100, None),
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-500", 100, (0, 99)),  # a suffix longer than the object: all of it
        ("bytes=50-5000", 100, (50, 99)),  # clipped at the end
        ("bytes=99-99", 100, (99, 99)),
        ("bytes=100-", 100, "unsatisfiable"),
        ("bytes=100-200", 100, "unsatisfiable"),
        ("bytes=-0", 100, "unsatisfiable"),
        ("bytes=0-", 0, "unsatisfiable"),
        ("bytes=9-3", 100, "unsatisfiable"),
        ("bytes=0-1,5-6", 100, None),  # several ranges: the whole object, as HTTP allows
        ("items=0-1", 100, None),
        ("bytes=a-b", 100, None),
        ("bytes=", 100, None),
    ],
)
def test_a_range_header_is_read_against_the_size(header, size, expected):
    assert byte_range(header, size) == expected


def test_metadata_within_the_caps_is_lower_cased_and_past_them_refused():
    assert objects.check_metadata({"Owner": "a", "x_y-z": "1"}) == {"owner": "a", "x_y-z": "1"}
    with pytest.raises(TooLarge):
        objects.check_metadata({f"k{i}": "v" for i in range(21)})
    with pytest.raises(TooLarge):
        objects.check_metadata({"k": "v" * 2048})
    for bad in ({"bad name": "v"}, {"k": "caf\u00e9"}, {"k": "line\nbreak"}, {"": "v"}):
        with pytest.raises(Rejected):
            objects.check_metadata(bad)


def test_an_sse_c_key_is_base64_of_32_bytes():
    assert objects.sse_c(None) is None
    assert objects.sse_c(base64.b64encode(b"k" * 32).decode()) is not None
    for bad in (
        "",
        "not base64!",
        base64.b64encode(b"k" * 31).decode(),
        base64.b64encode(b"k" * 33).decode(),
    ):
        with pytest.raises(Rejected) as caught:
            objects.sse_c(bad)
        assert caught.value.errors[0]["field"] == "X-Coreplane-SSE-C-Key"


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({}, "none"),
        ({"X-Amz-Server-Side-Encryption": "AES256"}, "SSE-S3"),
        ({"x-amz-server-side-encryption": "aws:kms"}, "unknown"),
        ({"X-Amz-Server-Side-Encryption-Customer-Algorithm": "AES256"}, "SSE-C"),
    ],
)
def test_the_encryption_comes_from_the_answer_headers(headers, expected):
    assert objects.encryption_of(headers) == expected


def test_a_listing_stats_for_encryption_a_few_at_a_time_and_keeps_the_order(monkeypatch):
    keys = [f"k{i:03d}" for i in range(40)]
    monkeypatch.setattr(objects, "_page", lambda *args: [Object("b", key, size=1) for key in keys])
    lock = threading.Lock()
    live = most = 0

    def stat(storage, bucket, key, **kwargs):
        nonlocal live, most
        with lock:
            live += 1
            most = max(most, live)
        time.sleep(0.02)  # a HEAD's round trip
        with lock:
            live -= 1
        return objects.ObjectInfo(bucket, key, 1, "", None, None, encryption=f"enc-{key}")

    monkeypatch.setattr(objects, "stat", stat)
    storage = SimpleNamespace(call=lambda op, bucket, fn, *args, **kwargs: fn(*args, **kwargs))
    page = objects.listing(storage, "b", limit=100, with_encryption=True)  # type: ignore[arg-type]
    assert [(o["key"], o["encryption"]) for o in page["objects"]] == [(k, f"enc-{k}") for k in keys]
    assert 1 < most <= objects.STATS_AT_ONCE
    plain = objects.listing(storage, "b", limit=100)  # type: ignore[arg-type]
    assert {o["encryption"] for o in plain["objects"]} == {"unknown"}
