"""Sharing on the real S3 server: presigned GET and PUT URLs work and expire; share links
/s/{token} redirect to a short-lived presigned GET until they expire, are revoked or run out
of downloads (exactly, under concurrent openers); who may share; bad input refused naming the
field with nothing stored; the token is kept only as its digest and never audited."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from minio.sse import SseCustomerKey
from sqlalchemy import event, inspect, select, text
from sqlalchemy.orm import Session

from controlplane.clock import utcnow
from controlplane.errors import Conflict, NotFound
from controlplane.storage import shares
from controlplane.storage.access import Caller
from controlplane.store.models import AuditEntry, StorageShare
from tests.support.problems import fields
from tests.support.storage import bucket_name, storage_api, token
from tests.support.timing import until

BODY = b"shared bytes \x00\x01" * 100
TTL_S = 30  # storage.presign_ttl_s: the life of the URL a link redirects to


@pytest.fixture
def api(services, tmp_path):
    with storage_api(services, tmp_path, presign_ttl_s=TTL_S) as client:
        yield client


def _session(api: TestClient) -> Session:
    return Session(api.app.state.engine)  # type: ignore[attr-defined]


def managed_bucket(api: TestClient, quota_bytes: int | None = None) -> str:
    """A bucket made through the API (the store manages it; the fixture purges it)."""
    name = bucket_name("share")
    made = api.post("/api/v1/storage/buckets", json={"name": name, "quota_bytes": quota_bytes})
    assert made.status_code == 201, made.text
    return name


def put(raw, bucket: str, key: str, body: bytes = BODY, **kw) -> None:
    raw.put_object(bucket, key, io.BytesIO(body), len(body), **kw)


def share(api: TestClient, bucket: str, key: str, **kw) -> dict:
    answer = api.post("/api/v1/storage/shares", json={"bucket": bucket, "key": key, **kw})
    assert answer.status_code == 201, answer.text
    return answer.json()


def open_link(api: TestClient, link: dict, **kw) -> httpx.Response:
    return api.get(urlsplit(link["url"]).path, follow_redirects=False, **kw)


def stored(api: TestClient, share_id: str) -> StorageShare:
    with _session(api) as session:
        found = session.get(StorageShare, uuid.UUID(share_id))
        assert found is not None
        return found


def audited(api: TestClient, action: str) -> list[AuditEntry]:
    with _session(api) as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_a_link_redirects_to_a_short_lived_url_and_dies_at_once_when_revoked(api, raw):
    bucket = managed_bucket(api)
    put(raw, bucket, "reports/q1 été.pdf")
    link = share(api, bucket, "reports/q1 été.pdf")
    assert link["url"] == f"http://testserver/s/{link['token']}" and link["state"] == "active"

    opened = open_link(api, link)
    assert opened.status_code == 302, opened.text
    assert opened.headers["cache-control"] == "no-store"
    assert opened.headers["referrer-policy"] == "no-referrer"
    issued = opened.headers["location"]
    assert parse_qs(urlsplit(issued).query)["X-Amz-Expires"] == [str(TTL_S)]
    fetched = httpx.get(issued)
    assert fetched.status_code == 200 and fetched.content == BODY
    assert fetched.headers["content-disposition"] == (
        "attachment; filename=\"q1_ete.pdf\"; filename*=UTF-8''q1%20%C3%A9t%C3%A9.pdf"
    )

    revoked = api.delete(f"/api/v1/storage/shares/{link['id']}")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked", revoked.text
    dead = open_link(api, link)
    assert dead.status_code == 410 and "revoked" in dead.text
    assert dead.headers["cache-control"] == "no-store"
    # The URL handed out before the revocation is S3's, signed with coreplane's key: nothing
    # can take it back. That is why a link only ever hands out URLs that live TTL_S seconds.
    assert httpx.get(issued).content == BODY
    assert api.delete(f"/api/v1/storage/shares/{link['id']}").status_code == 409

    row = stored(api, link["id"])
    assert (row.downloads, row.revoked_by) == (1, "admin") and row.last_download_at is not None
    [download] = audited(api, "storage.share.download")
    assert download.actor == f"share:{link['id']}" and download.client == "testclient"
    assert download.details == {"key": "reports/q1 été.pdf", "version_id": None, "download": 1}
    assert len(audited(api, "storage.share.revoke")) == 1


def test_a_link_dies_when_it_expires_and_a_head_counts_nothing(api, raw):
    bucket = managed_bucket(api)
    put(raw, bucket, "soon.txt")
    link = share(api, bucket, "soon.txt", expires_s=2)
    path = urlsplit(link["url"]).path
    assert open_link(api, link).status_code == 302

    until("the link to expire", lambda: api.head(path).status_code == 410, timeout_s=30, every_s=0.2)
    expired = open_link(api, link, headers={"Accept": "application/json"})
    assert expired.status_code == 410
    # problem+json like every other error body, the state as an extra field
    assert expired.headers["content-type"] == "application/problem+json"
    assert expired.headers["cache-control"] == "no-store"
    assert expired.json() == {"type": "about:blank", "title": "Gone", "status": 410, "state": "expired",
                              "detail": "this share link has expired"}  # fmt: skip
    assert stored(api, link["id"]).downloads == 1  # the HEADs counted nothing
    listed = api.get("/api/v1/storage/shares", params={"bucket": bucket, "state": "expired"}).json()
    assert [s["id"] for s in listed["shares"]] == [link["id"]]
    assert api.get("/api/v1/storage/shares", params={"state": "active"}).json()["shares"] == []


def test_a_link_runs_out_of_downloads(api, raw):
    bucket = managed_bucket(api)
    uploaded = api.put(f"/api/v1/storage/{bucket}/objects/twice.bin", content=BODY)
    assert uploaded.status_code in (200, 201), uploaded.text
    link = share(api, bucket, "twice.bin", max_downloads=2)
    assert [open_link(api, link).status_code for _ in range(2)] == [302, 302]
    gone = open_link(api, link)
    assert gone.status_code == 410 and "no downloads left" in gone.text
    assert api.head(urlsplit(link["url"]).path).status_code == 410
    shown = api.get(f"/api/v1/storage/shares/{link['id']}").json()
    assert (shown["state"], shown["downloads"], shown["max_downloads"]) == ("exhausted", 2, 2)
    assert "token" not in shown


def test_a_link_to_a_deleted_object_is_gone_and_costs_no_download(api, raw):
    bucket = managed_bucket(api)
    put(raw, bucket, "brief.txt")
    link = share(api, bucket, "brief.txt", max_downloads=5)
    raw.remove_object(bucket, "brief.txt")
    gone = open_link(api, link)
    assert gone.status_code == 410 and "no longer exists" in gone.text
    assert stored(api, link["id"]).downloads == 0 and audited(api, "storage.share.download") == []


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_concurrent_openers_never_take_more_downloads_than_the_link_has(services, tmp_path, raw, dialect):
    # On PostgreSQL the ten transactions overlap (SQLite queues writers at BEGIN): only the
    # conditional UPDATE keeps two of them from both taking the last download.
    with storage_api(services, tmp_path, dialect=dialect, presign_ttl_s=TTL_S) as api:
        bucket = managed_bucket(api)
        put(raw, bucket, "race.bin")
        link = share(api, bucket, "race.bin", max_downloads=3)
        with ThreadPoolExecutor(max_workers=10) as pool:
            statuses = list(pool.map(lambda _: open_link(api, link).status_code, range(10)))
        assert sorted(statuses) == [302] * 3 + [410] * 7
        assert stored(api, link["id"]).downloads == 3
        assert len(audited(api, "storage.share.download")) == 3


def test_presigned_get_and_put_work_and_expire(api, raw):
    bucket = managed_bucket(api)
    put(raw, bucket, "in.txt")

    def presign(method: str, key: str, expires_s: int) -> str:
        answer = api.post(
            "/api/v1/storage/presign",
            json={"bucket": bucket, "key": key, "method": method, "expires_s": expires_s},
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["url"]

    assert httpx.get(presign("GET", "in.txt", 600)).content == BODY
    assert httpx.put(presign("PUT", "up/new.bin", 600), content=b"put through").status_code == 200
    assert raw.get_object(bucket, "up/new.bin").read() == b"put through"

    short_get, short_put = presign("GET", "in.txt", 1), presign("PUT", "up/late.bin", 1)
    until("the presigned GET to expire", lambda: httpx.get(short_get).status_code == 403, timeout_s=30)
    until("the presigned PUT to expire", lambda: httpx.put(short_put, content=b"x").status_code == 403,
          timeout_s=30)  # fmt: skip
    assert [o.object_name for o in raw.list_objects(bucket, "up/")] == ["up/new.bin"]

    made = audited(api, "storage.presign")
    assert sorted(e.details["method"] for e in made) == ["GET", "GET", "PUT", "PUT"]  # type: ignore[index]
    assert all("Signature" not in str(e.details) for e in made)


def test_a_presigned_put_is_refused_on_a_bucket_with_a_quota(api, raw):
    bucket = managed_bucket(api, quota_bytes=1024)
    body = {"bucket": bucket, "key": "big.bin", "method": "PUT", "expires_s": 60}
    refused = api.post("/api/v1/storage/presign", json=body)
    assert refused.status_code == 409 and "quota" in refused.json()["detail"], refused.text
    assert audited(api, "storage.presign") == []
    assert api.post("/api/v1/storage/presign", json=body | {"method": "GET"}).status_code == 200


def test_who_may_presign_and_share(api, raw):
    bucket = managed_bucket(api)
    put(raw, bucket, "doc.txt")
    reader, stranger = token(api, "operator", "reader-c"), token(api, "operator", "stranger-c")
    granted = api.put(
        f"/api/v1/storage/buckets/{bucket}/grants", json={"subject": "user:reader-c", "level": "read"}
    )
    assert granted.status_code in (200, 201), granted.text
    body = {"bucket": bucket, "key": "doc.txt"}

    refused = api.post("/api/v1/storage/shares", json=body, headers=reader)
    assert refused.status_code == 403 and "write" in refused.json()["detail"]
    assert api.post("/api/v1/storage/shares", json=body, headers=stranger).status_code == 403
    presign = body | {"expires_s": 60}
    assert (
        api.post("/api/v1/storage/presign", json=presign | {"method": "PUT"}, headers=reader).status_code
        == 403
    )
    assert (
        api.post("/api/v1/storage/presign", json=presign | {"method": "GET"}, headers=stranger).status_code
        == 403
    )
    assert (
        api.post("/api/v1/storage/presign", json=presign | {"method": "GET"}, headers=reader).status_code
        == 200
    )
    with _session(api) as session:
        assert session.scalar(select(StorageShare.id)) is None
    assert audited(api, "storage.share.create") == []

    link = share(api, bucket, "doc.txt")
    assert api.get(f"/api/v1/storage/shares/{link['id']}", headers=reader).status_code == 200
    assert api.get(f"/api/v1/storage/shares/{link['id']}", headers=stranger).status_code == 403
    assert api.delete(f"/api/v1/storage/shares/{link['id']}", headers=reader).status_code == 403
    assert [s["id"] for s in api.get("/api/v1/storage/shares", headers=reader).json()["shares"]] == [
        link["id"]
    ]
    assert api.get("/api/v1/storage/shares", headers=stranger).json()["shares"] == []
    assert stored(api, link["id"]).revoked_at is None


def test_bad_input_is_refused_naming_the_field_and_stores_nothing(api, raw):
    bucket = managed_bucket(api)
    put(raw, bucket, "there.txt")
    most = 90 * 86400  # storage.share_max_days's default
    cases = [
        ({"expires_s": 0}, 422, "expires_s"),
        ({"expires_s": most + 1}, 422, "expires_s"),
        ({"max_downloads": 0}, 422, "max_downloads"),
        ({"max_downloads": 1_000_001}, 422, "max_downloads"),
        ({"key": "../there.txt"}, 422, "key"),
        ({"key": "/there.txt"}, 422, "key"),
        ({"key": "k" * 1025}, 422, "key"),
        ({"bucket": "Not_A_Bucket"}, 422, "bucket"),
        ({"key": "missing.txt"}, 404, None),
        ({"version_id": "no-such-version"}, 422, "version_id"),
    ]
    for change, status, field in cases:
        answer = api.post("/api/v1/storage/shares", json={"bucket": bucket, "key": "there.txt"} | change)
        assert answer.status_code == status, (change, answer.text)
        if field:
            assert fields(answer) == [field], (change, answer.text)
    presign = {"bucket": bucket, "key": "there.txt", "method": "GET"}
    for expires_s in (0, 7 * 86400 + 1):
        answer = api.post("/api/v1/storage/presign", json=presign | {"expires_s": expires_s})
        assert answer.status_code == 422 and fields(answer) == ["expires_s"], answer.text
    with _session(api) as session:
        assert session.scalar(select(StorageShare.id)) is None
    assert audited(api, "storage.share.create") == [] and audited(api, "storage.presign") == []
    assert api.get("/api/v1/storage/shares", params={"state": "lost"}).status_code == 422
    assert api.delete(f"/api/v1/storage/shares/{uuid.uuid4()}").status_code == 404


def test_an_object_under_a_customer_key_cannot_be_shared(api, raw):
    bucket = managed_bucket(api)
    put(raw, bucket, "sealed.bin", sse=SseCustomerKey(os.urandom(32)))
    refused = api.post("/api/v1/storage/shares", json={"bucket": bucket, "key": "sealed.bin"})
    assert refused.status_code == 422 and fields(refused) == ["key"], refused.text
    assert "SSE-C" in refused.json()["detail"]


def test_the_routes_are_documented_and_the_link_needs_no_login(api):
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/api/v1/storage/presign", "/api/v1/storage/shares", "/api/v1/storage/shares/{share_id}",
            "/s/{token}"} <= set(paths)  # fmt: skip
    anonymous = TestClient(api.app)  # type: ignore[arg-type]
    assert anonymous.get("/api/v1/storage/shares").status_code == 401
    assert anonymous.get(f"/s/{'y' * 43}", follow_redirects=False).status_code == 404


def test_unknown_and_overlong_tokens_are_404_and_the_long_one_reads_nothing(api):
    assert api.get(f"/s/{'x' * 43}", follow_redirects=False).status_code == 404
    statements: list[str] = []
    engine = api.app.state.engine  # type: ignore[attr-defined]

    def seen(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        overlong = api.get(f"/s/{'x' * 101}", follow_redirects=False)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert overlong.status_code == 404 and "no such share link" in overlong.text
    assert statements == []


def test_the_token_is_kept_only_as_its_digest_and_never_audited(api, raw):
    bucket = managed_bucket(api)
    put(raw, bucket, "secret.txt")
    link = share(api, bucket, "secret.txt")
    secret = link["token"]
    assert len(secret) >= 43 and link["url"].endswith(f"/s/{secret}")
    assert open_link(api, link).status_code == 302
    assert api.delete(f"/api/v1/storage/shares/{link['id']}").status_code == 200
    assert stored(api, link["id"]).token_digest == hashlib.sha256(secret.encode()).hexdigest()

    engine = api.app.state.engine  # type: ignore[attr-defined]
    dumped = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            dumped += [repr(tuple(row)) for row in conn.execute(text(f'SELECT * FROM "{table}"'))]
    everything = "\n".join(dumped)
    assert "storage.share.download" in everything  # the dump does see the audit log
    assert secret not in everything
    assert "X-Amz-Signature" not in everything


def test_revoking_with_the_bucket_takes_one_update_and_refuses_another_buckets_share(api, raw):
    mine, other = managed_bucket(api), managed_bucket(api)
    put(raw, other, "doc.txt")
    link = share(api, other, "doc.txt")
    share_id, admin = uuid.UUID(link["id"]), Caller("admin", "admin")
    with _session(api) as session, session.begin(), pytest.raises(NotFound):
        shares.revoke(session, admin, share_id, bucket=mine, now=utcnow())
    assert stored(api, link["id"]).revoked_at is None

    statements: list[str] = []
    engine = api.app.state.engine  # type: ignore[attr-defined]

    def seen(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if "storage_shares" in statement:
            statements.append(statement.split()[0])

    with _session(api) as session, session.begin():
        event.listen(engine, "before_cursor_execute", seen)
        try:
            revoked = shares.revoke(session, admin, share_id, bucket=other, now=utcnow())
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert (revoked.revoked_by, revoked.bucket, revoked.key) == ("admin", other, "doc.txt")
    assert statements == ["UPDATE"]  # no lookup before it, no re-read after: RETURNING gives the row
    assert stored(api, link["id"]).revoked_by == "admin"
    with _session(api) as session, session.begin(), pytest.raises(Conflict, match="revoked already"):
        shares.revoke(session, admin, share_id, bucket=other, now=utcnow())


def test_a_download_reads_the_share_once(api, raw):
    bucket = managed_bucket(api)
    put(raw, bucket, "doc.txt")
    link = share(api, bucket, "doc.txt")
    statements: list[str] = []
    engine = api.app.state.engine  # type: ignore[attr-defined]

    def seen(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if "storage_shares" in statement:
            statements.append(statement.split()[0])

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert open_link(api, link).status_code == 302
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert statements == ["SELECT", "UPDATE"]  # the lookup and the counting UPDATE, no re-read
    assert stored(api, link["id"]).downloads == 1
