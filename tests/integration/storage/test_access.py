"""Grants decide who may do what in a bucket, checked before anything reaches the server: a
token with no grant is refused 403 on every bucket and object route and the server is left
as it was; read may download but not write; a role grant covers every token of the role;
a revoked grant stops working at once."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from controlplane.storage import access
from controlplane.storage.access import Caller
from controlplane.store.models import AuditEntry
from tests.support.storage import bucket_name, session_of, token


@pytest.fixture
def bucket(api, raw):
    name = bucket_name("acc")
    made = api.post("/api/v1/storage/buckets", json={"name": name, "tags": {"keep": "me"}})
    assert made.status_code == 201, made.text
    raw.put_object(name, "secret.txt", io.BytesIO(b"secret"), 6)
    return name


def _server_state(raw, bucket: str) -> tuple:
    listed = sorted((o.object_name, o.etag) for o in raw.list_objects(bucket, recursive=True))
    return listed, dict(raw.get_bucket_tags(bucket) or {})


def _every_route(bucket: str, other: str) -> list[tuple[str, str, dict]]:
    objects = f"/api/v1/storage/{bucket}/objects"
    admin = f"/api/v1/storage/buckets/{bucket}"
    return [
        ("GET", admin, {}),
        ("DELETE", admin, {"params": {"force": "true"}}),
        ("PUT", f"{admin}/tags", {"json": {"tags": {"x": "y"}}}),
        ("PUT", f"{admin}/quota", {"json": {"quota_bytes": 1}}),
        ("GET", f"{admin}/grants", {}),
        ("PUT", f"{admin}/grants", {"json": {"subject": "role:viewer", "level": "admin"}}),
        ("DELETE", f"{admin}/grants", {"params": {"subject": "role:viewer"}}),
        ("GET", objects, {}),
        ("GET", f"{objects}/secret.txt", {}),
        ("HEAD", f"{objects}/secret.txt", {}),
        ("PUT", f"{objects}/new.txt", {"content": b"intruder"}),
        ("PUT", f"{objects}/secret.txt", {"content": b"overwritten"}),
        ("DELETE", f"{objects}/secret.txt", {}),
        ("POST", f"/api/v1/storage/{bucket}/copy", {"json": {"source_key": "secret.txt", "key": "copy"}}),
        # Reading from a bucket it holds nothing on, into one it may write: still refused.
        (
            "POST",
            f"/api/v1/storage/{bucket}/copy",
            {"json": {"source_key": "secret.txt", "key": "c", "bucket": other}},
        ),
    ]


def test_a_token_with_no_grant_is_refused_everywhere_and_touches_nothing(api, raw, bucket):
    outsider = token(api, "operator", "outsider")
    own = api.post("/api/v1/storage/buckets", json={"name": bucket_name("acc")}, headers=outsider)
    assert own.status_code == 201, own.text  # its own bucket, a copy target it may write
    before = _server_state(raw, bucket)

    for method, url, kwargs in _every_route(bucket, own.json()["name"]):
        answer = api.request(method, url, headers=outsider, **kwargs)
        assert answer.status_code == 403, (method, url, answer.status_code, answer.text)

    assert _server_state(raw, bucket) == before
    assert not list(raw.list_objects(own.json()["name"]))
    assert bucket not in [b["name"] for b in api.get("/api/v1/storage/buckets", headers=outsider).json()]
    assert api.get(f"/api/v1/storage/buckets/{bucket}").status_code == 200  # still there for the admin


def test_read_downloads_but_may_not_write_and_write_may_not_administer(api, raw, bucket):
    reader = token(api, "viewer", "reader-1")
    assert (
        api.put(
            f"/api/v1/storage/buckets/{bucket}/grants", json={"subject": "user:reader-1", "level": "read"}
        ).status_code
        == 200
    )

    assert api.get(f"/api/v1/storage/{bucket}/objects/secret.txt", headers=reader).content == b"secret"
    assert [
        o["key"] for o in api.get(f"/api/v1/storage/{bucket}/objects", headers=reader).json()["objects"]
    ] == ["secret.txt"]
    assert api.put(f"/api/v1/storage/{bucket}/objects/r.txt", content=b"r", headers=reader).status_code == 403
    assert api.delete(f"/api/v1/storage/{bucket}/objects/secret.txt", headers=reader).status_code == 403
    assert [b["name"] for b in api.get("/api/v1/storage/buckets", headers=reader).json()] == [bucket]

    api.put(f"/api/v1/storage/buckets/{bucket}/grants", json={"subject": "user:reader-1", "level": "write"})
    assert api.put(f"/api/v1/storage/{bucket}/objects/r.txt", content=b"r", headers=reader).status_code == 200
    assert (
        api.put(
            f"/api/v1/storage/buckets/{bucket}/quota", json={"quota_bytes": 9}, headers=reader
        ).status_code
        == 403
    )
    assert sorted(o.object_name for o in raw.list_objects(bucket)) == ["r.txt", "secret.txt"]


def test_a_role_grant_covers_every_token_of_the_role_and_a_revoke_works_at_once(api, raw, bucket):
    first, second = token(api, "viewer"), token(api, "viewer")
    operator = token(api, "operator")
    grant = api.put(
        f"/api/v1/storage/buckets/{bucket}/grants", json={"subject": "role:viewer", "level": "write"}
    )
    assert grant.status_code == 200, grant.text

    for i, headers in enumerate((first, second)):
        put = api.put(f"/api/v1/storage/{bucket}/objects/v{i}", content=b"v", headers=headers)
        assert put.status_code == 200, put.text
    # A role grant is for that role, not for the roles above it.
    assert api.get(f"/api/v1/storage/{bucket}/objects", headers=operator).status_code == 403

    listed = api.get(f"/api/v1/storage/buckets/{bucket}/grants").json()
    assert ("role:viewer", "write") in [(g["subject"], g["level"]) for g in listed]
    revoked = api.delete(f"/api/v1/storage/buckets/{bucket}/grants", params={"subject": "role:viewer"})
    assert revoked.status_code == 200, revoked.text

    assert api.get(f"/api/v1/storage/{bucket}/objects/v0", headers=first).status_code == 403
    assert api.put(f"/api/v1/storage/{bucket}/objects/v2", content=b"v", headers=second).status_code == 403
    assert sorted(o.object_name for o in raw.list_objects(bucket)) == ["secret.txt", "v0", "v1"]
    again = api.delete(f"/api/v1/storage/buckets/{bucket}/grants", params={"subject": "role:viewer"})
    assert again.status_code == 404


def test_bad_grants_are_refused_naming_the_field(api, bucket):
    for body, field in (
        ({"subject": "team:x", "level": "read"}, "subject"),
        ({"subject": "role:root", "level": "read"}, "subject"),
    ):
        answer = api.put(f"/api/v1/storage/buckets/{bucket}/grants", json=body)
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == [field]
    level = api.put(f"/api/v1/storage/buckets/{bucket}/grants", json={"subject": "user:a", "level": "owner"})
    assert level.status_code == 422 and "level" in level.text
    assert api.get(f"/api/v1/storage/buckets/{bucket}/grants").json() == []


def test_agents_hold_no_storage_access(api, bucket):
    agent = api.post("/api/v1/agents/register", json={"name": "agent-storage"})
    assert agent.status_code in (200, 201), agent.text
    headers = {"Authorization": f"Bearer {agent.json()['token']}"}
    for path in (f"/api/v1/storage/{bucket}/objects/secret.txt", "/api/v1/storage/buckets"):
        refused = api.get(path, headers=headers)
        assert refused.status_code == 403, refused.text
        assert "agents have no access to application storage" in refused.text


def test_a_grant_audits_what_it_replaced_and_visible_filters_by_level(api, bucket):
    other = bucket_name("acc")
    assert api.post("/api/v1/storage/buckets", json={"name": other}).status_code == 201
    grants = f"/api/v1/storage/buckets/{bucket}/grants"
    assert api.put(grants, json={"subject": "user:bo", "level": "read"}).status_code == 200
    assert api.put(grants, json={"subject": "user:bo", "level": "write"}).status_code == 200
    granted = api.put(
        f"/api/v1/storage/buckets/{other}/grants", json={"subject": "role:viewer", "level": "admin"}
    )
    assert granted.status_code == 200
    with session_of(api) as session:
        audited = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "storage.grant", AuditEntry.target == bucket)
        ).all()
        bo_grants = [
            (a.details["level"], a.details["was"]) for a in audited if a.details["subject"] == "user:bo"
        ]
        assert sorted(bo_grants, key=str) == [("read", None), ("write", "read")]
        bo = Caller("bo", "viewer")
        assert access.visible(session, bo) == {bucket, other}  # other through role:viewer
        assert access.visible(session, bo, at_least="write") == {bucket, other}
        assert access.visible(session, bo, at_least="admin") == {other}
        assert access.visible(session, Caller("cy", "operator"), at_least="read") == set()
        assert access.visible(session, Caller("root", "admin"), at_least="admin") is None
