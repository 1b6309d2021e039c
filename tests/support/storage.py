"""Storage test support: the real S3 server (SeaweedFS) through the minio SDK, bucket names
no other test used, and the app on a fresh store with storage on, which removes every
bucket it managed (all versions) when the test ends."""

from __future__ import annotations

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
from controlplane.store.models import StorageBucket, StorageMirror
from tests.support.problems import fields as fields  # the storage tests take it from here
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
