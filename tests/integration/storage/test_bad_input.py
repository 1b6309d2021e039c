"""Bad input gets a 4xx naming what to fix, and nothing is stored (the server's listing,
and its incomplete multipart uploads, stay empty): bad and reserved bucket names, '..' and
absolute keys, keys over 1,024 bytes, a body shorter or longer than its Content-Length, a
quota exceeded (declared, and found while streaming in parts), metadata past its caps."""

from __future__ import annotations

import pytest

from tests.support.problems import fields
from tests.support.storage import bucket_name, storage_api

MIB = 1024 * 1024


@pytest.fixture
def bucket(api):
    name = bucket_name("bad")
    assert api.post("/api/v1/storage/buckets", json={"name": name}).status_code == 201
    return name


def _nothing_stored(raw, bucket: str) -> None:
    assert not list(raw.list_objects(bucket, recursive=True, include_version=True))
    assert not raw._list_multipart_uploads(bucket).uploads  # no part left behind either


@pytest.mark.parametrize(
    "name, reason",
    [
        ("Upper-Case", "bad bucket name"),
        ("ab", "bad bucket name"),
        ("under_score", "bad bucket name"),
        ("a..b", "bad bucket name"),
        ("192.168.1.1", "bad bucket name"),
        ("x" * 64, "bad bucket name"),
        ("buckets", "reserved bucket name"),
        ("analytics", "reserved bucket name"),
    ],
)
def test_a_bad_or_reserved_bucket_name_is_refused_and_nothing_made(api, raw, name, reason):
    answer = api.post("/api/v1/storage/buckets", json={"name": name})
    assert answer.status_code == 422, answer.text
    assert fields(answer) == ["name"]
    assert answer.json()["errors"][0]["reason"] == reason
    assert name not in {b.name for b in raw.list_buckets()}


def test_a_bad_bucket_name_in_the_path_is_refused_naming_it(api):
    for method, url in (
        ("GET", "/api/v1/storage/Bad_Bucket/objects"),
        ("PUT", "/api/v1/storage/Bad_Bucket/objects/k"),
        ("GET", "/api/v1/storage/buckets/Bad_Bucket"),
        ("DELETE", "/api/v1/storage/buckets/x/grants?subject=role:viewer"),
    ):
        answer = api.request(method, url, content=b"x" if method == "PUT" else None)
        assert answer.status_code == 422, (url, answer.text)
        assert fields(answer) == ["bucket"], url


@pytest.mark.parametrize(
    "path, reason",
    [
        ("a/%2E%2E/b", "path segment"),
        ("%2E%2E", "path segment"),
        ("a/%2E/b", "path segment"),
        ("a//b", "path segment"),
        ("%2Fetc/passwd", "absolute key"),
        ("a%5Cb", "backslash"),
        ("a%01b", "control character"),
        ("k" * 1025, "key too long"),
        ("%C3%A9" * 513, "key too long"),  # 513 characters, 1,026 bytes of UTF-8
    ],
)
def test_a_bad_key_is_refused_naming_it_and_nothing_stored(api, raw, bucket, path, reason):
    answer = api.put(f"/api/v1/storage/{bucket}/objects/{path}", content=b"payload")
    assert answer.status_code == 422, answer.text
    assert fields(answer) == ["key"] and answer.json()["errors"][0]["reason"] == reason
    assert api.get(f"/api/v1/storage/{bucket}/objects/{path}").status_code == 422
    _nothing_stored(raw, bucket)


def test_a_key_of_exactly_1024_bytes_is_taken_and_one_the_server_refuses_is_named(api, raw, bucket):
    key = "/".join(["k" * 200] * 5) + "/" + "k" * 19  # 1,024 bytes
    assert len(key) == 1024
    assert api.put(f"/api/v1/storage/{bucket}/objects/{key}", content=b"ok").status_code == 200
    assert [o.object_name for o in raw.list_objects(bucket, recursive=True)] == [key]

    # SeaweedFS takes at most 255 bytes between two '/': its refusal names the key too.
    refused = api.put(f"/api/v1/storage/{bucket}/objects/{'s' * 256}", content=b"no")
    assert refused.status_code == 422, refused.text
    assert fields(refused) == ["key"]
    assert refused.json()["errors"][0]["reason"] == "key too long for the server"


def _body(total: int, chunk: int = 64 * 1024):
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        sent += n
        yield b"z" * n


@pytest.mark.parametrize(
    "declared, sent",
    [
        (1000, 600),  # shorter, in one part
        (12 * MIB, 8 * MIB),  # shorter, after a part was sent
        (1000, 1400),  # longer
        (6 * MIB, 6 * MIB + 10),  # longer, after a part was sent
    ],
)
def test_a_body_that_is_not_its_content_length_is_refused_and_nothing_stored(
    api, raw, bucket, declared, sent
):
    answer = api.put(
        f"/api/v1/storage/{bucket}/objects/wrong-length",
        content=_body(sent),
        headers={"Content-Length": str(declared)},
    )
    assert answer.status_code == 400, answer.text
    assert fields(answer) == ["Content-Length"]
    _nothing_stored(raw, bucket)


def test_an_upload_past_the_quota_is_refused_declared_or_streamed_and_nothing_stored(api, raw, bucket):
    assert (
        api.put(f"/api/v1/storage/buckets/{bucket}/quota", json={"quota_bytes": 12 * MIB}).status_code == 200
    )

    declared = api.put(f"/api/v1/storage/{bucket}/objects/declared", content=b"q" * (12 * MIB + 1))
    assert declared.status_code == 413, declared.text
    assert fields(declared) == ["Content-Length"] and "quota" in declared.json()["detail"]
    _nothing_stored(raw, bucket)

    # Chunked (no length): two 5 MiB parts go up before the bytes pass the quota; the
    # upload is aborted there, parts and all.
    streamed = api.put(f"/api/v1/storage/{bucket}/objects/streamed", content=_body(20 * MIB))
    assert streamed.status_code == 413, streamed.text
    assert fields(streamed) == ["body"] and "quota" in streamed.json()["detail"]
    _nothing_stored(raw, bucket)

    # Within the quota it goes; the next one finds less room.
    assert api.put(f"/api/v1/storage/{bucket}/objects/fits", content=_body(8 * MIB)).status_code == 200
    over = api.put(f"/api/v1/storage/{bucket}/objects/next", content=b"q" * (5 * MIB))
    assert over.status_code == 413, over.text
    assert [o.object_name for o in raw.list_objects(bucket)] == ["fits"]


def test_an_object_past_the_largest_size_is_refused_before_anything_is_sent(services, tmp_path, raw):
    with storage_api(services, tmp_path, max_object_gb=0.001) as api:  # about 1 MB
        name = bucket_name("bad")
        assert api.post("/api/v1/storage/buckets", json={"name": name}).status_code == 201
        answer = api.put(f"/api/v1/storage/{name}/objects/big", content=b"b" * 2_000_000)
        assert answer.status_code == 413 and "max_object_gb" in answer.json()["detail"]
        _nothing_stored(raw, name)


def test_metadata_and_encryption_headers_past_their_rules_are_refused(api, raw, bucket):
    url = f"/api/v1/storage/{bucket}/objects/meta"
    many = {f"X-Meta-K{i}": "v" for i in range(21)}
    cases = [
        (many, 413, "X-Meta-*"),
        ({"X-Meta-Big": "v" * 2100}, 413, "X-Meta-*"),
        ({"X-Meta-Bad.Name": "v"}, 422, "X-Meta-*.bad.name"),
        ({"X-Coreplane-SSE": "KMS"}, 422, "X-Coreplane-SSE"),
        ({"X-Coreplane-SSE-C-Key": "not base64!"}, 422, "X-Coreplane-SSE-C-Key"),
    ]
    for headers, status, field in cases:
        answer = api.put(url, content=b"m", headers=headers)
        assert answer.status_code == status, (headers, answer.text)
        assert fields(answer) == [field], headers
    _nothing_stored(raw, bucket)


def test_copy_with_a_bad_key_or_target_is_refused_naming_the_body_field(api, raw, bucket):
    for body, field in (
        ({"source_key": "../x", "key": "y"}, "source_key"),
        ({"source_key": "x", "key": "/y"}, "key"),
        ({"source_key": "x", "key": "y", "bucket": "NO"}, "bucket"),
    ):
        answer = api.post(f"/api/v1/storage/{bucket}/copy", json=body)
        assert answer.status_code == 422, answer.text
        assert fields(answer) == [field]
    _nothing_stored(raw, bucket)
