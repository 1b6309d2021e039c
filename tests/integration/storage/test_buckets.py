"""Buckets through the API on the real S3 server: created with tags, quota and versioning,
listed, described, retagged, requoted, and deleted (refused while anything is in them, unless
forced, and then gone from the server too); every write audited."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.store.models import (
    AuditEntry,
    StorageDrill,
    StorageGrant,
    StorageMirror,
    StorageMirrorVersion,
    StorageShare,
)
from tests.support.problems import fields
from tests.support.storage import bucket_name, mirror_of, purge, run_mirror, storage_api, token

GIB = 1024**3


@pytest.fixture
def api(services, tmp_path):
    with storage_api(services, tmp_path, default_quota_gb=2) as client:
        yield client


def test_a_bucket_is_made_with_its_tags_quota_and_versioning_and_shown_as_the_server_holds_it(api, raw):
    name = bucket_name("bk")
    made = api.post(
        "/api/v1/storage/buckets",
        json={
            "name": name,
            "quota_bytes": 5_000_000,
            "tags": {"team": "core", "env": "test"},
            "versioning": True,
        },
    )
    assert made.status_code == 201, made.text
    assert made.json()["quota_bytes"] == 5_000_000
    assert raw.bucket_exists(name)
    assert raw.get_bucket_versioning(name).status == "Enabled"
    assert dict(raw.get_bucket_tags(name) or {}) == {"team": "core", "env": "test"}

    detail = api.get(f"/api/v1/storage/buckets/{name}").json()
    assert detail["versioning"] == "Enabled"
    assert detail["tags"] == {"team": "core", "env": "test"}
    assert detail["used_bytes"] == 0 and detail["objects"] == 0
    assert detail["created_by"] == "admin"
    assert name in [b["name"] for b in api.get("/api/v1/storage/buckets").json()]

    plain = bucket_name("bk")
    assert api.post("/api/v1/storage/buckets", json={"name": plain}).status_code == 201
    shown = api.get(f"/api/v1/storage/buckets/{plain}").json()
    assert shown["quota_bytes"] == 2 * GIB  # storage.default_quota_gb
    assert shown["versioning"] == "Off" and shown["tags"] == {}

    again = api.post("/api/v1/storage/buckets", json={"name": plain})
    assert again.status_code == 409, again.text


def test_a_bucket_already_on_the_server_is_not_adopted(api, raw):
    name = bucket_name("bk")
    raw.make_bucket(name)
    try:
        answer = api.post("/api/v1/storage/buckets", json={"name": name})
        assert answer.status_code == 409, answer.text
        assert "exists on the S3 server" in answer.json()["detail"]
    finally:
        raw.remove_bucket(name)


def test_tags_and_quota_are_replaced_and_audited(api, raw):
    name = bucket_name("bk")
    assert api.post("/api/v1/storage/buckets", json={"name": name, "tags": {"a": "1"}}).status_code == 201

    assert api.put(f"/api/v1/storage/buckets/{name}/tags", json={"tags": {"b": "2"}}).status_code == 200
    assert dict(raw.get_bucket_tags(name) or {}) == {"b": "2"}
    assert api.put(f"/api/v1/storage/buckets/{name}/tags", json={"tags": {}}).status_code == 200
    assert not dict(raw.get_bucket_tags(name) or {})

    assert (
        api.put(f"/api/v1/storage/buckets/{name}/quota", json={"quota_bytes": 1234}).json()["quota_bytes"]
        == 1234
    )
    assert (
        api.put(f"/api/v1/storage/buckets/{name}/quota", json={"quota_bytes": None}).json()["quota_bytes"]
        is None
    )
    bad = api.put(f"/api/v1/storage/buckets/{name}/quota", json={"quota_bytes": -5})
    assert bad.status_code == 422 and fields(bad) == ["quota_bytes"]
    too_many = api.put(
        f"/api/v1/storage/buckets/{name}/tags", json={"tags": {f"k{i}": "v" for i in range(51)}}
    )
    assert too_many.status_code == 413 and fields(too_many) == ["tags"]

    with Session(api.app.state.engine) as session:
        actions = list(session.scalars(select(AuditEntry.action).where(AuditEntry.target == name)))
    assert actions.count("storage.bucket.tags") == 2
    assert actions.count("storage.bucket.quota") == 2
    assert "storage.bucket.create" in actions


def test_a_bucket_that_holds_anything_is_kept_unless_forced_and_then_gone_everywhere(api, raw):
    name = bucket_name("bk")
    assert api.post("/api/v1/storage/buckets", json={"name": name, "versioning": True}).status_code == 201
    assert api.put(f"/api/v1/storage/{name}/objects/a.txt", content=b"one").status_code == 200
    assert api.put(f"/api/v1/storage/{name}/objects/a.txt", content=b"two").status_code == 200
    assert api.delete(f"/api/v1/storage/{name}/objects/a.txt").status_code == 200  # a delete marker

    refused = api.delete(f"/api/v1/storage/buckets/{name}")
    assert refused.status_code == 409, refused.text
    assert "not empty" in refused.json()["detail"] and "force" in refused.json()["detail"]
    assert raw.bucket_exists(name)  # nothing touched

    # Everything that hangs on the bucket: a user's grant, a share link, a scheduled mirror
    # that has run (its version rows) and a drill of it.
    granted = api.put(f"/api/v1/storage/buckets/{name}/grants", json={"subject": "user:ann", "level": "read"})
    assert granted.status_code == 200, granted.text
    assert api.put(f"/api/v1/storage/{name}/objects/b.txt", content=b"kept").status_code == 200
    shared = api.post("/api/v1/storage/shares", json={"bucket": name, "key": "b.txt"})
    assert shared.status_code == 201, shared.text
    target = bucket_name("bkmt")
    mirror = mirror_of(api, name, target, interval_s=3600)
    try:
        run_mirror(api, mirror["id"])
        drilled = api.post("/api/v1/storage/drills", json={"mirror_id": mirror["id"]})
        assert drilled.status_code == 201, drilled.text
        hanging = (StorageGrant, StorageShare, StorageMirror, StorageDrill)
        with Session(api.app.state.engine) as session:
            assert all(session.scalars(select(m).where(m.bucket == name)).first() for m in hanging)
            assert session.scalars(select(StorageMirrorVersion)).first() is not None

        gone = api.delete(f"/api/v1/storage/buckets/{name}", params={"force": "true"})
        assert gone.status_code == 200, gone.text
        assert not raw.bucket_exists(name)
        assert api.get(f"/api/v1/storage/buckets/{name}").status_code == 404
        with Session(api.app.state.engine) as session:
            for model in hanging:
                assert not list(session.scalars(select(model).where(model.bucket == name))), model
            assert not list(session.scalars(select(StorageMirrorVersion)))
            deleted = session.scalars(
                select(AuditEntry).where(
                    AuditEntry.target == name, AuditEntry.action == "storage.bucket.delete"
                )
            ).one()
        # two versions and a marker of a.txt, and b.txt
        assert deleted.details == {"force": True, "removed_versions": 4}
    finally:
        purge(raw, target)  # a mirror's target outlives it: the fixture no longer knows it


def test_an_empty_bucket_is_deleted_without_force(api, raw):
    name = bucket_name("bk")
    assert api.post("/api/v1/storage/buckets", json={"name": name}).status_code == 201
    raw.put_object(name, "x", io.BytesIO(b"x"), 1)
    raw.remove_object(name, "x")
    assert api.delete(f"/api/v1/storage/buckets/{name}").status_code == 200
    assert not raw.bucket_exists(name)


def test_an_operator_creates_and_then_administers_its_bucket_and_a_viewer_may_not_create(api, raw):
    operator = token(api, "operator", "ops-1")
    name = bucket_name("bk")
    made = api.post("/api/v1/storage/buckets", json={"name": name}, headers=operator)
    assert made.status_code == 201, made.text
    assert [b["name"] for b in api.get("/api/v1/storage/buckets", headers=operator).json()] == [name]
    assert api.get(f"/api/v1/storage/buckets/{name}", headers=operator).json()["level"] == "admin"
    grants = api.get(f"/api/v1/storage/buckets/{name}/grants", headers=operator).json()
    assert [(g["subject"], g["level"]) for g in grants] == [("user:ops-1", "admin")]

    viewer = token(api, "viewer")
    refused = api.post("/api/v1/storage/buckets", json={"name": bucket_name("bk")}, headers=viewer)
    assert refused.status_code == 403, refused.text
    assert api.get("/api/v1/storage/buckets", headers=viewer).json() == []

    # The admin makes buckets without a grant of its own: it holds admin everywhere.
    other = bucket_name("bk")
    assert api.post("/api/v1/storage/buckets", json={"name": other}).status_code == 201
    assert api.get(f"/api/v1/storage/buckets/{other}/grants").json() == []
