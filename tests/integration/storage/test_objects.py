"""Objects through the API on the real S3 server: put, get and head with their type and
metadata; listing by prefix and delimiter, page by page; copy; delete; range reads (206
with the exact bytes, suffix ranges, 416); chunked uploads in several parts; usage counted;
SSE-S3 and SSE-C round trips (SSE-C refused without its key, or with another)."""

from __future__ import annotations

import base64
import hashlib
import os
import random

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session

from controlplane.storage import metrics
from controlplane.store.models import StorageBucket
from tests.support.problems import fields
from tests.support.storage import bucket_name

MIB = 1024 * 1024


@pytest.fixture
def bucket(api):
    name = bucket_name("obj")
    assert api.post("/api/v1/storage/buckets", json={"name": name}).status_code == 201
    return name


def _usage(api, bucket: str) -> tuple[int, int]:
    assert api.app.state.storage_loop.flush() == "ok"  # the writes' pending usage into the row
    with Session(api.app.state.engine) as session:
        row = session.get(StorageBucket, bucket)
        assert row is not None
        return row.used_bytes, row.objects


def test_put_get_head_keep_the_bytes_type_and_metadata(api, raw, bucket):
    body = os.urandom(3000)
    put = api.put(
        f"/api/v1/storage/{bucket}/objects/docs/report.pdf",
        content=body,
        headers={"Content-Type": "application/pdf", "X-Meta-Owner": "team-a", "X-Meta-Reviewed": "yes"},
    )
    assert put.status_code == 200, put.text
    assert put.json()["size"] == 3000 and put.json()["etag"] == hashlib.md5(body).hexdigest()

    stored = raw.stat_object(bucket, "docs/report.pdf")
    assert stored.size == 3000 and stored.content_type == "application/pdf"
    assert stored.metadata["x-amz-meta-owner"] == "team-a"

    got = api.get(f"/api/v1/storage/{bucket}/objects/docs/report.pdf")
    assert got.status_code == 200 and got.content == body
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-length"] == "3000"
    assert got.headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert got.headers["x-meta-owner"] == "team-a" and got.headers["x-meta-reviewed"] == "yes"
    assert got.headers["x-coreplane-encryption"] == "none"
    assert got.headers["last-modified"].endswith("GMT")

    head = api.head(f"/api/v1/storage/{bucket}/objects/docs/report.pdf")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "3000" and head.headers["x-meta-owner"] == "team-a"

    assert api.get(f"/api/v1/storage/{bucket}/objects/docs/missing").status_code == 404
    assert _usage(api, bucket) == (3000, 1)


def test_an_empty_object_round_trips(api, bucket):
    assert api.put(f"/api/v1/storage/{bucket}/objects/empty", content=b"").status_code == 200
    got = api.get(f"/api/v1/storage/{bucket}/objects/empty")
    assert got.status_code == 200 and got.content == b"" and got.headers["content-length"] == "0"


def test_a_non_ascii_key_downloads_as_an_attachment_with_an_ascii_fallback(api, bucket):
    # A latin-1-unsafe name in filename="..." made the server fail the answer (500).
    key = "日本/語 résumé.txt"
    assert api.put(f"/api/v1/storage/{bucket}/objects/{key}", content=b"hello").status_code == 200
    for answer in (api.get(f"/api/v1/storage/{bucket}/objects/{key}"),
                   api.head(f"/api/v1/storage/{bucket}/objects/{key}")):  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-disposition"] == (
            "attachment; filename=\"_resume.txt\"; filename*=UTF-8''%E8%AA%9E%20r%C3%A9sum%C3%A9.txt"
        )
    assert api.get(f"/api/v1/storage/{bucket}/objects/{key}").content == b"hello"


def test_a_chunked_body_goes_up_in_parts_and_comes_back_whole(api, raw, bucket):
    rng = random.Random(7)
    pieces = [rng.randbytes(700_000) for _ in range(18)]  # 12.6 MB: three 5 MiB parts

    put = api.put(f"/api/v1/storage/{bucket}/objects/big/chunked.bin", content=iter(pieces))
    assert put.status_code == 200, put.text
    whole = b"".join(pieces)
    assert put.json()["size"] == len(whole)
    assert "-3" in raw.stat_object(bucket, "big/chunked.bin").etag  # a multipart upload's etag
    got = api.get(f"/api/v1/storage/{bucket}/objects/big/chunked.bin")
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(whole).digest()


def test_listing_by_prefix_and_delimiter_pages_through_every_key_once(api, raw, bucket):
    keys = [f"logs/2026/{i:02d}.txt" for i in range(25)] + ["logs/readme", "logs/old/a", "logs/old/b", "top"]
    for key in keys:
        assert api.put(f"/api/v1/storage/{bucket}/objects/{key}", content=key.encode()).status_code == 200

    seen: list[str] = []
    start = None
    pages = 0
    while True:
        params = {"prefix": "logs/2026/", "limit": 10, **({"start_after": start} if start else {})}
        page = api.get(f"/api/v1/storage/{bucket}/objects", params=params).json()
        pages += 1
        seen += [o["key"] for o in page["objects"]]
        assert len(page["objects"]) <= 10
        start = page["next"]
        if start is None:
            break
        assert pages < 10
    assert pages == 3 and seen == sorted(keys[:25])

    folder = api.get(f"/api/v1/storage/{bucket}/objects", params={"prefix": "logs/"}).json()
    assert [o["key"] for o in folder["objects"]] == ["logs/readme"]
    assert folder["prefixes"] == ["logs/2026/", "logs/old/"]
    assert folder["objects"][0]["size"] == len(b"logs/readme")

    # A page that ends on a folder resumes after it, not inside it.
    first = api.get(f"/api/v1/storage/{bucket}/objects", params={"prefix": "logs/", "limit": 1}).json()
    assert first["prefixes"] == ["logs/2026/"] and first["next"] == "logs/2026/"
    rest = api.get(
        f"/api/v1/storage/{bucket}/objects", params={"prefix": "logs/", "start_after": first["next"]}
    ).json()
    assert rest["prefixes"] == ["logs/old/"] and [o["key"] for o in rest["objects"]] == ["logs/readme"]

    tree = api.get(f"/api/v1/storage/{bucket}/objects", params={"delimiter": "", "limit": 1000}).json()
    assert sorted(o["key"] for o in tree["objects"]) == sorted(keys) and tree["next"] is None

    too_many = api.get(f"/api/v1/storage/{bucket}/objects", params={"limit": 1001})
    assert too_many.status_code == 422 and fields(too_many) == ["query.limit"]


def test_copy_within_and_across_buckets_keeps_type_and_metadata(api, raw, bucket):
    other = bucket_name("obj")
    assert api.post("/api/v1/storage/buckets", json={"name": other}).status_code == 201
    body = b"copy me" * 100
    api.put(
        f"/api/v1/storage/{bucket}/objects/src",
        content=body,
        headers={"Content-Type": "text/plain", "X-Meta-A": "b"},
    )

    same = api.post(f"/api/v1/storage/{bucket}/copy", json={"source_key": "src", "key": "dst/one"})
    assert same.status_code == 201, same.text
    across = api.post(
        f"/api/v1/storage/{bucket}/copy", json={"source_key": "src", "key": "two", "bucket": other}
    )
    assert across.status_code == 201, across.text
    assert across.json()["metadata"] == {"a": "b"} and across.json()["content_type"] == "text/plain"
    stored = raw.stat_object(other, "two")
    assert across.json()["etag"] == stored.etag.strip('"') and across.json()["size"] == len(body)
    assert across.json()["last_modified"] is not None and across.json()["encryption"] == "none"
    assert raw.get_object(other, "two").read() == body
    assert raw.get_object(bucket, "dst/one").read() == body
    assert _usage(api, other) == (len(body), 1)

    missing = api.post(f"/api/v1/storage/{bucket}/copy", json={"source_key": "nope", "key": "x"})
    assert missing.status_code == 404


def test_delete_removes_the_object_and_its_usage(api, raw, bucket):
    api.put(f"/api/v1/storage/{bucket}/objects/gone", content=b"12345")
    assert _usage(api, bucket) == (5, 1)
    answer = api.delete(f"/api/v1/storage/{bucket}/objects/gone")
    assert answer.status_code == 200 and answer.json()["delete_marker"] is False
    assert not list(raw.list_objects(bucket))
    assert _usage(api, bucket) == (0, 0)
    assert api.delete(f"/api/v1/storage/{bucket}/objects/gone").status_code == 404


def test_deleting_a_version_does_not_ask_for_the_versioning(api, raw):
    name = bucket_name("obj")
    assert api.post("/api/v1/storage/buckets", json={"name": name, "versioning": True}).status_code == 201
    url = f"/api/v1/storage/{name}/objects/v"
    first = api.put(url, content=b"one").json()["version_id"]
    assert api.put(url, content=b"two").status_code == 200
    # Counted now, the leader's usage round leaves the bucket (and its versioning) alone for
    # count_interval_s: only the deletes below can ask.
    assert api.app.state.storage_loop.run_once()["usage"] == "ok"  # type: ignore[attr-defined]
    before = _calls("get_bucket_versioning", name)
    gone = api.delete(url, params={"version_id": first})
    assert gone.status_code == 200 and gone.json()["delete_marker"] is False
    assert _calls("get_bucket_versioning", name) == before
    left = [v.version_id for v in raw.list_objects(name, include_version=True)]
    assert len(left) == 1 and first not in left
    marked = api.delete(url)
    assert marked.status_code == 200 and marked.json()["delete_marker"] is True
    assert _calls("get_bucket_versioning", name) == before + 1


def test_range_reads_give_exactly_the_bytes_asked_for(api, bucket):
    body = bytes(range(256)) * 40  # 10,240 bytes
    api.put(f"/api/v1/storage/{bucket}/objects/r", content=body)
    url = f"/api/v1/storage/{bucket}/objects/r"

    part = api.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == body[100:1100]
    assert (
        part.headers["content-range"] == "bytes 100-1099/10240" and part.headers["content-length"] == "1000"
    )

    tail = api.get(url, headers={"Range": "bytes=-300"})
    assert tail.status_code == 206 and tail.content == body[-300:]
    assert tail.headers["content-range"] == "bytes 9940-10239/10240"

    rest = api.get(url, headers={"Range": "bytes=10000-"})
    assert rest.status_code == 206 and rest.content == body[10000:]

    past = api.get(url, headers={"Range": "bytes=10240-10300"})
    assert past.status_code == 416 and past.headers["content-range"] == "bytes */10240"
    clipped = api.get(url, headers={"Range": "bytes=10200-99999"})
    assert clipped.status_code == 206 and clipped.content == body[10200:]
    assert clipped.headers["content-range"] == "bytes 10200-10239/10240"
    backwards = api.get(url, headers={"Range": "bytes=9-3"})
    assert backwards.status_code == 416 and backwards.headers["content-range"] == "bytes */10240"
    every = api.get(url, headers={"Range": "bytes=0-"})
    assert every.status_code == 206 and every.content == body
    assert every.headers["content-range"] == "bytes 0-10239/10240"

    head = api.head(url, headers={"Range": "bytes=10-19"})
    assert head.status_code == 206 and head.headers["content-range"] == "bytes 10-19/10240"
    assert head.headers["content-length"] == "10" and head.content == b""


def _calls(op: str, bucket: str) -> float:
    labels = {"op": op, "bucket": metrics.bucket_label(bucket)}
    return REGISTRY.get_sample_value("coreplane_storage_request_seconds_count", labels) or 0.0


def test_a_get_is_one_s3_call_and_only_a_suffix_range_stats_first(api, bucket):
    body = os.urandom(5000)
    api.put(f"/api/v1/storage/{bucket}/objects/one", content=body)
    url = f"/api/v1/storage/{bucket}/objects/one"
    for headers, stats in (({}, 0), ({"Range": "bytes=10-99"}, 0), ({"Range": "bytes=-10"}, 1)):
        before = (_calls("stat_object", bucket), _calls("get_object", bucket))
        answer = api.get(url, headers=headers)
        assert answer.status_code in (200, 206) and answer.content in (body, body[10:100], body[-10:])
        after = (_calls("stat_object", bucket), _calls("get_object", bucket))
        assert (after[0] - before[0], after[1] - before[1]) == (stats, 1), headers


def test_an_empty_object_has_no_range_to_give(api, bucket):
    assert api.put(f"/api/v1/storage/{bucket}/objects/empty", content=b"").status_code == 200
    for asked in ("bytes=0-", "bytes=0-10", "bytes=-5"):
        answer = api.get(f"/api/v1/storage/{bucket}/objects/empty", headers={"Range": asked})
        assert answer.status_code == 416, (asked, answer.status_code)
        assert answer.headers["content-range"] == "bytes */0"


def test_sse_s3_and_sse_c_objects_round_trip_and_sse_c_needs_its_key(api, raw, bucket):
    s3 = api.put(
        f"/api/v1/storage/{bucket}/objects/s3", content=b"server keys", headers={"X-Coreplane-SSE": "S3"}
    )
    assert s3.status_code == 200, s3.text
    got = api.get(f"/api/v1/storage/{bucket}/objects/s3")
    assert got.content == b"server keys" and got.headers["x-coreplane-encryption"] == "SSE-S3"

    key = base64.b64encode(os.urandom(32)).decode()
    with_key = {"X-Coreplane-SSE-C-Key": key}
    put = api.put(f"/api/v1/storage/{bucket}/objects/c", content=b"my keys", headers=with_key)
    assert put.status_code == 200, put.text
    got = api.get(f"/api/v1/storage/{bucket}/objects/c", headers=with_key)
    assert got.content == b"my keys" and got.headers["x-coreplane-encryption"] == "SSE-C"
    part = api.get(f"/api/v1/storage/{bucket}/objects/c", headers={**with_key, "Range": "bytes=3-6"})
    assert part.status_code == 206 and part.content == b"keys"

    for headers in ({}, {"X-Coreplane-SSE-C-Key": base64.b64encode(os.urandom(32)).decode()}):
        refused = api.get(f"/api/v1/storage/{bucket}/objects/c", headers=headers)
        assert refused.status_code == 422, refused.text
        assert fields(refused) == ["X-Coreplane-SSE-C-Key"]
    assert api.head(f"/api/v1/storage/{bucket}/objects/c").status_code == 422

    listed = api.get(f"/api/v1/storage/{bucket}/objects", params={"with_encryption": "true"}).json()
    assert {o["key"]: o["encryption"] for o in listed["objects"]} == {"c": "SSE-C", "s3": "SSE-S3"}

    bad = api.put(
        f"/api/v1/storage/{bucket}/objects/d", content=b"x", headers={"X-Coreplane-SSE-C-Key": "c2hvcnQ="}
    )
    assert bad.status_code == 422 and fields(bad) == ["X-Coreplane-SSE-C-Key"]
    assert sorted(o.object_name for o in raw.list_objects(bucket)) == ["c", "s3"]
