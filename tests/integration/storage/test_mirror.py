"""Mirrors on the real S3 server: every version with its content type and metadata copied,
delete markers as deletes, oldest first so the target's latest is the source's; a second run
copies nothing and a change copies one; a second endpoint through its own client; SSE-C
objects skipped and named; scheduled mirrors run by the storage loop; who may, and bad input
refused naming the field with nothing stored."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from minio import Minio
from minio.error import S3Error
from minio.sse import SseCustomerKey, SseS3
from sqlalchemy import select

from controlplane.clock import utcnow
from controlplane.storage import access
from controlplane.store.models import AuditEntry, StorageMirror
from tests.support.problems import fields
from tests.support.storage import (
    bucket_name,
    managed,
    mirror_of,
    raw_put,
    raw_read,
    run_mirror,
    session_of,
    storage_api,
    token,
)


def by_key(raw: Minio, bucket: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for item in raw.list_objects(bucket, recursive=True, include_version=True):
        found.setdefault(item.object_name, []).append(item)
    return found


def test_a_versioned_bucket_is_mirrored_version_by_version_then_incrementally(api, raw):
    source, target = managed(api, "mirsrc"), bucket_name("mirtgt")
    bodies = {}
    for key in ("k1", "dir/k2", "k3"):
        for rev in (1, 2):
            body = f"{key} revision {rev} ".encode() * (50 * rev)
            raw_put(
                raw, source, key, body, content_type=f"text/x-rev{rev}", metadata={"x-amz-meta-rev": str(rev)}
            )
            bodies[(key, rev)] = body
    raw.remove_object(source, "k3")  # a delete marker, the latest of k3
    mirror = mirror_of(api, source, target)
    assert raw.get_bucket_versioning(target).status == "Enabled"  # made versioned, as its source

    first = run_mirror(api, mirror["id"])
    assert (first["copied"], first["deletes"], first["skipped"]) == (6, 1, 0)
    assert first["bytes"] == sum(len(b) for b in bodies.values())

    source_versions, target_versions = by_key(raw, source), by_key(raw, target)
    assert set(target_versions) == set(source_versions) == {"k1", "dir/k2", "k3"}
    for key, versions in source_versions.items():
        ours = target_versions[key]
        assert len(ours) == len(versions), key
        assert sum(bool(v.is_delete_marker) for v in ours) == sum(bool(v.is_delete_marker) for v in versions)
        for copy in (v for v in ours if not v.is_delete_marker):
            body, headers = raw_read(raw, target, key, copy.version_id)
            rev = int(headers["x-amz-meta-rev"])
            assert body == bodies[(key, rev)] and headers["content-type"] == f"text/x-rev{rev}"
            origin = headers["x-amz-meta-coreplane-source-version"]
            assert origin in {v.version_id for v in versions}  # each copy names its source version
    # Oldest first: the target's latest is the source's latest.
    for key in ("k1", "dir/k2"):
        assert raw_read(raw, target, key)[0] == bodies[(key, 2)] == raw_read(raw, source, key)[0]
    with pytest.raises(S3Error) as gone:
        raw.stat_object(target, "k3")
    assert gone.value.code in ("NoSuchKey", "NotFound", "MethodNotAllowed")

    assert run_mirror(api, mirror["id"])["copied"] == 0  # nothing changed: nothing copied
    assert run_mirror(api, mirror["id"])["deletes"] == 0

    raw_put(raw, source, "k1", b"third", content_type="text/plain")
    third = run_mirror(api, mirror["id"])
    assert (third["copied"], third["bytes"], third["deletes"]) == (1, 5, 0)
    assert raw_read(raw, target, "k1")[0] == b"third"
    assert len(by_key(raw, target)["k1"]) == 3

    shown = api.get(f"/api/v1/storage/mirrors/{mirror['id']}").json()
    assert shown["last_report"]["copied"] == 1 and shown["last_ok_at"] and shown["last_error"] is None
    assert [m["id"] for m in api.get("/api/v1/storage/mirrors", params={"bucket": source}).json()] == [
        mirror["id"]
    ]
    with session_of(api) as session:
        runs = session.scalars(select(AuditEntry).where(AuditEntry.action == "storage.mirror.run")).all()
    assert len(runs) == 4


def test_a_second_endpoint_goes_through_its_own_client(services, tmp_path, raw):
    # The harness has one S3 server: the "mirror" endpoint is the same server's address,
    # which proves the separate client path (a second Minio client, streamed, no server copy).
    s3 = services.s3
    with storage_api(
        services, tmp_path, mirror_endpoint=s3.endpoint, mirror_access_key=s3.access_key,
        mirror_secret_key=s3.secret_key,
    ) as api:  # fmt: skip
        storage = api.app.state.storage  # type: ignore[attr-defined]
        assert storage.mirror is not storage.client
        source, target = managed(api, "mirsrc", versioning=False), bucket_name("mirend")
        raw_put(raw, source, "a.bin", bytes(range(256)) * 40, metadata={"x-amz-meta-owner": "ops"})
        onto_itself = {"bucket": source, "target_bucket": source, "target_endpoint": "mirror"}
        refused = api.post("/api/v1/storage/mirrors", json=onto_itself)  # the same server, by address
        assert refused.status_code == 422 and fields(refused) == ["target_bucket"], refused.text
        mirror = mirror_of(api, source, target, target_endpoint="mirror")
        assert mirror["target_endpoint"] == "mirror"
        assert run_mirror(api, mirror["id"])["copied"] == 1
        body, headers = raw_read(raw, target, "a.bin")
        assert body == bytes(range(256)) * 40 and headers["x-amz-meta-owner"] == "ops"
        # An unversioned source: an overwrite keeps the version id "null", its ETag tells it.
        raw_put(raw, source, "a.bin", b"overwritten")
        assert run_mirror(api, mirror["id"])["copied"] == 1
        assert run_mirror(api, mirror["id"])["copied"] == 0
        assert raw_read(raw, target, "a.bin")[0] == b"overwritten"


def test_sse_c_objects_are_skipped_and_named_on_every_run_and_sse_s3_stays_encrypted(api, raw):
    source, target = managed(api, "mirsrc"), bucket_name("mirssec")
    raw_put(raw, source, "secret.bin", b"s" * 100, sse=SseCustomerKey(b"k" * 32))
    raw_put(raw, source, "plain.txt", b"plain")
    raw_put(raw, source, "sealed.txt", b"sse-s3", sse=SseS3())
    mirror = mirror_of(api, source, target)
    first = run_mirror(api, mirror["id"])
    assert (first["copied"], first["skipped"], first["skipped_keys"]) == (2, 1, ["secret.bin"])
    again = run_mirror(api, mirror["id"])
    assert (again["copied"], again["skipped"], again["skipped_keys"]) == (0, 1, ["secret.bin"])
    assert sorted(o.object_name for o in raw.list_objects(target, recursive=True)) == [
        "plain.txt",
        "sealed.txt",
    ]
    sealed = raw.stat_object(target, "sealed.txt").metadata
    assert sealed.get("x-amz-server-side-encryption") == "AES256"
    assert raw.stat_object(target, "plain.txt").metadata.get("x-amz-server-side-encryption") is None


def test_a_scheduled_mirror_runs_from_the_storage_loop_when_due(api, raw):
    source, target = managed(api, "mirsrc"), bucket_name("mirsched")
    raw_put(raw, source, "x", b"scheduled")
    mirror = mirror_of(api, source, target, interval_s=3600)
    assert mirror["next_run_at"] is not None
    loop = api.app.state.storage_loop  # type: ignore[attr-defined]
    assert loop.run_once()["mirrors"] == "ok"
    shown = api.get(f"/api/v1/storage/mirrors/{mirror['id']}").json()
    assert shown["last_report"]["copied"] == 1 and raw_read(raw, target, "x")[0] == b"scheduled"
    ran_at = shown["last_run_at"]
    assert loop.run_once()["mirrors"] == "ok"  # due again only an hour later
    assert api.get(f"/api/v1/storage/mirrors/{mirror['id']}").json()["last_run_at"] == ran_at
    with session_of(api) as session, session.begin():
        row = session.get(StorageMirror, uuid.UUID(mirror["id"]))
        assert row is not None
        row.next_run_at = utcnow() - timedelta(seconds=1)
    raw_put(raw, source, "y", b"later")
    assert loop.run_once()["mirrors"] == "ok"
    assert api.get(f"/api/v1/storage/mirrors/{mirror['id']}").json()["last_report"]["copied"] == 1


def test_only_bucket_admins_mirror_and_bad_input_names_the_field(api, raw):
    source = managed(api, "mirsrc")
    raw_put(raw, source, "x", b"x")
    writer = token(api, "operator", "mirror-writer")
    with session_of(api) as session, session.begin():
        access.grant(session, source, "user:mirror-writer", "write", actor="admin")
    target = bucket_name("mirdeny")
    refused = api.post(
        "/api/v1/storage/mirrors", json={"bucket": source, "target_bucket": target}, headers=writer
    )
    assert refused.status_code == 403, refused.text
    assert not raw.bucket_exists(target)
    mirror = mirror_of(api, source, target)
    for method, path in (("post", f"/mirrors/{mirror['id']}/run"), ("get", f"/mirrors/{mirror['id']}"),
                         ("delete", f"/mirrors/{mirror['id']}")):  # fmt: skip
        assert getattr(api, method)(f"/api/v1/storage{path}", headers=writer).status_code == 403
    assert api.get("/api/v1/storage/mirrors", headers=writer).json() == []

    for body, field in (
        ({"bucket": source, "target_bucket": "Bad_Name"}, "target_bucket"),
        ({"bucket": source, "target_bucket": source}, "target_bucket"),
        ({"bucket": source, "target_bucket": bucket_name("mirbad"), "interval_s": 5}, "interval_s"),
        ({"bucket": source, "target_bucket": bucket_name("mirbad"), "target_endpoint": "elsewhere"},
         "target_endpoint"),
        ({"bucket": "..", "target_bucket": bucket_name("mirbad")}, "bucket"),
    ):  # fmt: skip
        answer = api.post("/api/v1/storage/mirrors", json=body)
        assert answer.status_code == 422, answer.text
        assert any(field in (f or "") for f in fields(answer)), (field, answer.json())
    taken = api.post("/api/v1/storage/mirrors", json={"bucket": source, "target_bucket": target})
    assert taken.status_code == 409
    assert len(api.get("/api/v1/storage/mirrors").json()) == 1  # nothing else stored
    assert api.delete(f"/api/v1/storage/mirrors/{mirror['id']}").status_code == 204
    assert api.get(f"/api/v1/storage/mirrors/{mirror['id']}").status_code == 404
