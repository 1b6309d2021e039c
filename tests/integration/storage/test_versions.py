"""Versioning through the API on the real S3 server: overwrite, list the versions newest
first, restore an old one (its bytes and metadata), delete (a delete marker), undelete (the
bytes back); pages by whole keys; who may do what."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.storage import versions as versions_module
from controlplane.store.models import AuditEntry
from tests.support.problems import fields
from tests.support.storage import bucket_name, token

API = "/api/v1/storage"


def make_bucket(api: TestClient, *, versioning: bool) -> str:
    name = bucket_name("ver")
    answer = api.post(f"{API}/buckets", json={"name": name, "versioning": versioning})
    assert answer.status_code == 201, answer.text
    return name


def put(api: TestClient, bucket: str, key: str, body: bytes, **headers: str) -> dict:
    answer = api.put(f"{API}/{bucket}/objects/{key}", content=body, headers=headers)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def get(api: TestClient, bucket: str, key: str, **params: str):
    return api.get(f"{API}/{bucket}/objects/{key}", params=params)


def versions(api: TestClient, bucket: str, **params: object) -> dict:
    answer = api.get(f"{API}/{bucket}/versions", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_overwrite_restore_delete_undelete(api: TestClient) -> None:
    bucket = make_bucket(api, versioning=False)
    assert api.get(f"{API}/buckets/{bucket}/versioning").json() == {"status": "Off"}
    answer = api.put(f"{API}/buckets/{bucket}/versioning", json={"status": "Enabled"})
    assert answer.status_code == 200, answer.text
    assert api.get(f"{API}/buckets/{bucket}/versioning").json() == {"status": "Enabled"}

    put(api, bucket, "doc/a.txt", b"first", **{"X-Meta-Draft": "1", "Content-Type": "text/plain"})
    put(api, bucket, "doc/a.txt", b"second", **{"X-Meta-Draft": "2"})
    put(api, bucket, "doc/b.txt", b"other")
    listed = versions(api, bucket)
    assert listed["next"] is None
    a = [v for v in listed["versions"] if v["key"] == "doc/a.txt"]
    assert [v["is_latest"] for v in a] == [True, False]  # newest first
    assert [v["size"] for v in a] == [6, 5]
    old = a[1]["version_id"]
    assert get(api, bucket, "doc/a.txt", version_id=old).content == b"first"

    answer = api.post(f"{API}/{bucket}/versions/restore", json={"key": "doc/a.txt", "version_id": old})
    assert answer.status_code == 200, answer.text
    restored = answer.json()
    assert restored["version_id"] not in (old, a[0]["version_id"])
    current = get(api, bucket, "doc/a.txt")
    assert current.content == b"first"
    assert current.headers.get("x-meta-draft") == "1"  # the old version's metadata came back too
    a = [v for v in versions(api, bucket, prefix="doc/a")["versions"]]
    assert len(a) == 3 and a[0]["version_id"] == restored["version_id"] and a[0]["is_latest"]

    assert api.delete(f"{API}/{bucket}/objects/doc/a.txt").status_code in (200, 204)
    assert get(api, bucket, "doc/a.txt").status_code == 404
    a = versions(api, bucket, prefix="doc/a")["versions"]
    assert a[0]["is_delete_marker"] and a[0]["is_latest"] and len(a) == 4

    answer = api.post(f"{API}/{bucket}/versions/undelete", json={"key": "doc/a.txt"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["version_id"] == restored["version_id"]
    assert get(api, bucket, "doc/a.txt").content == b"first"
    again = api.post(f"{API}/{bucket}/versions/undelete", json={"key": "doc/a.txt"})
    assert again.status_code == 409, again.text  # the latest is no delete marker now

    with Session(api.app.state.engine) as session:  # type: ignore[attr-defined]
        done = set(session.scalars(select(AuditEntry.action).where(AuditEntry.target == bucket)))
    assert {"storage.versioning", "storage.version.restore", "storage.version.undelete"} <= done


def test_restore_and_undelete_refuse_what_is_not_there(api: TestClient) -> None:
    bucket = make_bucket(api, versioning=True)
    put(api, bucket, "k", b"x")
    answer = api.post(f"{API}/{bucket}/versions/restore", json={"key": "k", "version_id": "nope"})
    assert answer.status_code == 404, answer.text
    answer = api.post(f"{API}/{bucket}/versions/undelete", json={"key": "missing"})
    assert answer.status_code == 404, answer.text
    answer = api.post(f"{API}/{bucket}/versions/restore", json={"key": "../k", "version_id": "v"})
    assert answer.status_code == 422 and fields(answer) == ["key"], answer.text
    answer = api.put(f"{API}/buckets/{bucket}/versioning", json={"status": "Off"})
    assert answer.status_code == 422 and fields(answer) == ["status"], answer.text


def test_pages_hold_whole_keys_newest_first(api: TestClient) -> None:
    bucket = make_bucket(api, versioning=True)
    for key in ("p/a", "p/b", "p/c"):
        for n in range(3):
            put(api, bucket, key, f"{key}{n}".encode())
    seen, marker, pages = [], None, 0
    while True:
        page = versions(api, bucket, limit=2, **({"key_marker": marker} if marker else {}))
        pages += 1
        keys = [v["key"] for v in page["versions"]]
        assert len(set(keys)) == 1, keys  # limit 2 < 3 versions: one whole key a page
        assert [v["is_latest"] for v in page["versions"]] == [True, False, False]
        seen += keys
        marker = page["next"]
        if marker is None or pages > 5:
            break
    assert pages == 3 and seen == ["p/a"] * 3 + ["p/b"] * 3 + ["p/c"] * 3
    assert api.get(f"{API}/{bucket}/versions", params={"limit": 1001}).status_code == 422


def test_callers_without_the_level_get_403_and_change_nothing(api: TestClient) -> None:
    bucket = make_bucket(api, versioning=True)
    put(api, bucket, "k", b"one")
    put(api, bucket, "k", b"two")
    old = versions(api, bucket)["versions"][1]["version_id"]
    viewer = token(api, "viewer", "ver-viewer")
    reader = token(api, "operator", "ver-reader")
    assert api.put(
        f"{API}/buckets/{bucket}/grants", json={"subject": "user:ver-reader", "level": "read"}
    ).is_success
    assert api.get(f"{API}/{bucket}/versions", headers=viewer).status_code == 403
    assert api.get(f"{API}/{bucket}/versions", headers=reader).status_code == 200
    for who in (viewer, reader):
        assert (
            api.put(
                f"{API}/buckets/{bucket}/versioning", json={"status": "Suspended"}, headers=who
            ).status_code
            == 403
        )
        answer = api.post(
            f"{API}/{bucket}/versions/restore", json={"key": "k", "version_id": old}, headers=who
        )
        assert answer.status_code == 403
        assert (
            api.post(f"{API}/{bucket}/versions/undelete", json={"key": "k"}, headers=who).status_code == 403
        )
    assert api.get(f"{API}/buckets/{bucket}/versioning").json() == {"status": "Enabled"}
    assert len(versions(api, bucket)["versions"]) == 2
    assert get(api, bucket, "k").content == b"two"


def test_restore_reads_no_listing_and_a_delete_marker_is_409(api: TestClient, monkeypatch) -> None:
    bucket = make_bucket(api, versioning=True)
    old = put(api, bucket, "k", b"one")["version_id"]
    put(api, bucket, "k", b"two")
    storage = api.app.state.storage  # type: ignore[attr-defined]

    def no_listing(*args: object, **kwargs: object) -> None:
        raise AssertionError("restore listed the key's versions")

    with monkeypatch.context() as patch:
        patch.setattr(storage.client, "list_objects", no_listing)
        answer = api.post(f"{API}/{bucket}/versions/restore", json={"key": "k", "version_id": old})
    assert answer.status_code == 200, answer.text
    assert get(api, bucket, "k").content == b"one"

    assert api.delete(f"{API}/{bucket}/objects/k").status_code in (200, 204)
    marker = versions(api, bucket, prefix="k")["versions"][0]
    assert marker["is_delete_marker"]
    answer = api.post(
        f"{API}/{bucket}/versions/restore", json={"key": "k", "version_id": marker["version_id"]}
    )
    assert answer.status_code == 409 and "delete marker" in answer.json()["detail"], answer.text


def test_a_key_with_more_versions_than_a_server_page_is_listed_whole(api: TestClient, raw) -> None:
    bucket = make_bucket(api, versioning=True)
    many = versions_module.SERVER_PAGE + 50  # one key over a whole server page

    def write(n: int) -> None:
        raw.put_object(bucket, "many", io.BytesIO(b"%d" % n), len(b"%d" % n))

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(many)))
    put(api, bucket, "next", b"x")
    assert time.monotonic() - started < 120  # a bounded load: 1,051 small puts on loopback

    first = versions(api, bucket, limit=10)
    assert [v["key"] for v in first["versions"]] == ["many"] * many  # not cut at the server page
    assert first["next"] == "many"
    second = versions(api, bucket, limit=10, key_marker=first["next"])
    assert [v["key"] for v in second["versions"]] == ["next"] and second["next"] is None
