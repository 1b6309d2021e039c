"""Encryption through the API on the real S3 server: a bucket's default SSE-S3 (set, read,
removed), per-object SSE-S3, SSE-C round trips only with its key (none or a wrong one: a 4xx),
and the listing and HEAD show each object's encryption state; only the bucket's admins set
the default."""

from __future__ import annotations

import base64
import os

from fastapi.testclient import TestClient

from tests.support.problems import fields
from tests.support.storage import bucket_name, raw_client, token

API = "/api/v1/storage"
SSE_C = "X-Coreplane-SSE-C-Key"


def make_bucket(api: TestClient) -> str:
    name = bucket_name("enc")
    answer = api.post(f"{API}/buckets", json={"name": name})
    assert answer.status_code == 201, answer.text
    return name


def put(api: TestClient, bucket: str, key: str, body: bytes, **headers: str) -> None:
    answer = api.put(f"{API}/{bucket}/objects/{key}", content=body, headers=headers)
    assert answer.is_success, answer.text


def state(api: TestClient, bucket: str, key: str, **headers: str) -> str:
    answer = api.head(f"{API}/{bucket}/objects/{key}", headers=headers)
    assert answer.status_code == 200, answer.status_code
    return answer.headers["X-Coreplane-Encryption"]


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_a_default_sse_s3_bucket_encrypts_what_is_written(api: TestClient, services) -> None:
    bucket = make_bucket(api)
    assert api.get(f"{API}/buckets/{bucket}/encryption").json() == {"default": None}
    put(api, bucket, "before", b"plain")
    answer = api.put(f"{API}/buckets/{bucket}/encryption", json={"default": "SSE-S3"})
    assert answer.status_code == 200 and answer.json() == {"default": "SSE-S3"}, answer.text
    assert api.get(f"{API}/buckets/{bucket}/encryption").json() == {"default": "SSE-S3"}
    put(api, bucket, "after", b"secret")
    assert state(api, bucket, "after") == "SSE-S3"
    assert state(api, bucket, "before") == "none"  # written before: as it was
    assert api.get(f"{API}/{bucket}/objects/after").content == b"secret"
    # The server itself says so, not only coreplane.
    assert (
        raw_client(services).stat_object(bucket, "after").metadata.get("x-amz-server-side-encryption")
        == "AES256"
    )

    answer = api.put(f"{API}/buckets/{bucket}/encryption", json={"default": None})
    assert answer.status_code == 200 and answer.json() == {"default": None}
    put(api, bucket, "later", b"plain again")
    assert state(api, bucket, "later") == "none"
    answer = api.put(f"{API}/buckets/{bucket}/encryption", json={"default": "SSE-KMS"})
    assert answer.status_code == 422 and fields(answer) == ["default"], answer.text


def test_per_object_sse_s3_and_sse_c_round_trip(api: TestClient) -> None:
    bucket = make_bucket(api)
    key, wrong = new_key(), new_key()
    put(api, bucket, "plain", b"p")
    put(api, bucket, "s3", b"server keys", **{"X-Coreplane-SSE": "S3"})
    body = os.urandom(70_000)
    put(api, bucket, "c", body, **{SSE_C: key})

    assert state(api, bucket, "plain") == "none"
    assert state(api, bucket, "s3") == "SSE-S3"
    assert state(api, bucket, "c", **{SSE_C: key}) == "SSE-C"
    assert api.get(f"{API}/{bucket}/objects/s3").content == b"server keys"
    found = api.get(f"{API}/{bucket}/objects/c", headers={SSE_C: key})
    assert found.status_code == 200 and found.content == body
    ranged = api.get(f"{API}/{bucket}/objects/c", headers={SSE_C: key, "Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == body[10:20]

    without = api.get(f"{API}/{bucket}/objects/c")
    assert 400 <= without.status_code < 500, without.status_code
    assert body not in without.content
    wrong_key = api.get(f"{API}/{bucket}/objects/c", headers={SSE_C: wrong})
    assert 400 <= wrong_key.status_code < 500, wrong_key.status_code
    assert body[:100] not in wrong_key.content
    bad = api.get(f"{API}/{bucket}/objects/c", headers={SSE_C: "c2hvcnQ="})
    assert bad.status_code == 422 and fields(bad) == [SSE_C], bad.text

    listed = api.get(f"{API}/{bucket}/objects", params={"with_encryption": "true"})
    assert listed.status_code == 200, listed.text
    states = {o["key"]: o["encryption"] for o in listed.json()["objects"]}
    # SSE-C: the server refuses a stat without the key, which says what the object is.
    assert states == {"plain": "none", "s3": "SSE-S3", "c": "SSE-C"}


def test_only_the_buckets_admins_set_the_default(api: TestClient) -> None:
    bucket = make_bucket(api)
    viewer = token(api, "viewer", "enc-viewer")
    writer = token(api, "operator", "enc-writer")
    grant = {"subject": "user:enc-writer", "level": "write"}
    assert api.put(f"{API}/buckets/{bucket}/grants", json=grant).is_success
    for who in (viewer, writer):
        answer = api.put(f"{API}/buckets/{bucket}/encryption", json={"default": "SSE-S3"}, headers=who)
        assert answer.status_code == 403
    assert api.get(f"{API}/buckets/{bucket}/encryption", headers=viewer).status_code == 403
    assert api.get(f"{API}/buckets/{bucket}/encryption", headers=writer).json() == {"default": None}


def test_setting_the_default_reads_once_to_decide_and_not_back(api: TestClient, monkeypatch) -> None:
    bucket = make_bucket(api)
    client = api.app.state.storage.client  # type: ignore[attr-defined]
    reads: list[str] = []
    real = client.get_bucket_encryption
    monkeypatch.setattr(client, "get_bucket_encryption", lambda name: reads.append(name) or real(name))
    for default in ("SSE-S3", None):
        answer = api.put(f"{API}/buckets/{bucket}/encryption", json={"default": default})
        assert answer.status_code == 200 and answer.json() == {"default": default}, answer.text
    assert reads == [bucket, bucket]  # one read each: whether a default is there to remove
    assert api.get(f"{API}/buckets/{bucket}/encryption").json() == {"default": None}
