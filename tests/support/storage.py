"""Storage test support: the real S3 server (SeaweedFS) through the minio SDK, bucket names
no other test used, and the app on a fresh store with storage on, which removes every
bucket it managed (all versions) when the test ends."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from minio import Minio
from minio.deleteobjects import DeleteObject
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.app import create_app
from controlplane.settings import Settings, StorageSettings
from controlplane.storage import buckets
from controlplane.store.models import StorageBucket, StorageMirror
from tests.support.services import require
from tests.support.stores import ADMIN, make_settings, migrated_store


def raw_client(services: Settings) -> Minio:
    """The minio SDK straight to the harness's S3 server."""
    s3 = services.s3
    require(s3.endpoint, "s3")
    assert s3.endpoint is not None
    return Minio(s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key, secure=s3.secure)


def bucket_name(prefix: str = "t") -> str:
    """A bucket name no other test (nor an earlier run on the same server) used."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def purge(client: Minio, bucket: str) -> None:
    """``bucket`` gone from the server, every version and delete marker first; quiet when
    it is gone already."""
    if not client.bucket_exists(bucket):
        return
    doomed = (
        DeleteObject(o.object_name, o.version_id)
        for o in client.list_objects(bucket, recursive=True, include_version=True)
        if o.object_name is not None
    )
    for failed in client.remove_objects(bucket, doomed):
        raise AssertionError(f"could not empty {bucket}: {failed}")
    client.remove_bucket(bucket)


@contextmanager
def storage_api(
    services: Settings, tmp_path: Path, *, dialect: str = "sqlite", **storage: Any
) -> Iterator[TestClient]:
    """The app (in process, its lifespan running) on a fresh SQLite store in ``tmp_path``,
    storage on the harness's S3 server with ``storage`` as StorageSettings fields, called as
    the admin. Every bucket the store managed, and every mirror's target, is purged after."""
    raw = raw_client(services)
    # dialect="postgresql": a fresh schema, where concurrent writers really overlap.
    with migrated_store(dialect, tmp_path, services) as store:
        settings = make_settings(store, s3=services.s3, storage=StorageSettings(**storage))
        app = create_app(settings)
        try:
            with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}) as client:
                yield client
        finally:
            with Session(app.state.engine) as session:
                names = set(session.scalars(select(StorageBucket.name)))
                names |= {m.target_bucket for m in session.scalars(select(StorageMirror))}
            for name in sorted(names):
                purge(raw, name)


def token(client: TestClient, role: str, name: str | None = None) -> dict[str, str]:
    """Headers carrying a new API token at ``role`` (named ``name``: grants to
    ``user:<name>`` apply to it)."""
    answer = client.post(
        "/api/v1/tokens", json={"name": name or f"{role}-{uuid.uuid4().hex[:8]}", "role": role}
    )
    assert answer.status_code in (200, 201), answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def session_of(api: TestClient) -> Session:
    """A store session on the in-process app's engine."""
    return Session(api.app.state.engine)  # type: ignore[attr-defined]


def managed(api: TestClient, prefix: str = "t", *, versioning: bool = True) -> str:
    """A managed bucket made through the library as the admin (versioned unless told)."""
    name = bucket_name(prefix)
    with session_of(api) as session, session.begin():
        storage = api.app.state.storage  # type: ignore[attr-defined]
        buckets.create(session, storage, name, actor="admin", role="admin", versioning=versioning)
    return name


def raw_put(raw: Minio, bucket: str, key: str, body: bytes, **kw: Any) -> None:
    """``body`` stored under ``key`` straight through the SDK (``kw``: put_object's)."""
    raw.put_object(bucket, key, io.BytesIO(body), len(body), **kw)


def raw_read(raw: Minio, bucket: str, key: str, version_id: str | None = None) -> tuple[bytes, dict]:
    """An object's body and its headers (lower-cased names) straight through the SDK."""
    answer = raw.get_object(bucket, key, version_id=version_id)
    try:
        return answer.read(), {k.lower(): v for k, v in answer.headers.items()}
    finally:
        answer.close()
        answer.release_conn()


def mirror_of(api: TestClient, source: str, target: str, **extra: Any) -> dict:
    """A mirror of ``source`` into ``target`` made through the API (not run)."""
    made = api.post("/api/v1/storage/mirrors", json={"bucket": source, "target_bucket": target, **extra})
    assert made.status_code == 201, made.text
    return made.json()


def run_mirror(api: TestClient, mirror_id: str) -> dict:
    """The report of a mirror's run through the API, which must have copied without error."""
    answer = api.post(f"/api/v1/storage/mirrors/{mirror_id}/run")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert "error" not in report, report
    return report


def mirrored(api: TestClient, source: str, target_prefix: str = "tgt") -> dict:
    """A mirror of ``source`` into a new bucket, run once (its report under "report")."""
    made = mirror_of(api, source, bucket_name(target_prefix))
    return {**made, "report": run_mirror(api, made["id"])}
