"""Managed buckets: made on the S3 server and recorded in the store with their quota, so
grants, shares, quotas and usage have a row to hang on. Every function takes the caller's
session and never commits; every S3 call goes through ``Storage.call``."""

from __future__ import annotations

from typing import Any

from minio.commonconfig import ENABLED, Tags
from minio.deleteobjects import DeleteError, DeleteObject
from minio.sseconfig import Rule, SSEConfig
from minio.versioningconfig import VersioningConfig
from sqlalchemy import delete as sql_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.clock import utcnow
from controlplane.errors import Conflict, NotFound, Rejected, TooLarge
from controlplane.storage import names
from controlplane.storage.access import grant
from controlplane.storage.client import Storage
from controlplane.store.models import (
    StorageBucket,
    StorageDrill,
    StorageGrant,
    StorageMirror,
    StorageMirrorVersion,
    StorageShare,
)

GB = 1024**3
MAX_TAGS = 50  # S3's own cap on a bucket's tags
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
MAX_QUOTA_BYTES = 1024**5 * 100  # 100 PiB: past it, a typo rather than a quota


def create(
    session: Session,
    storage: Storage,
    name: str,
    *,
    actor: str,
    quota_bytes: int | None = None,
    tags: dict[str, str] | None = None,
    versioning: bool = False,
    role: str | None = None,
    encryption: str | None = None,
) -> StorageBucket:
    """A new bucket on the server and its row; ``actor`` gets admin on it unless their
    ``role`` is admin (admins hold admin everywhere). ``encryption`` "SSE-S3" makes it the
    bucket's default. Conflict when the bucket exists on the server or in the store:
    coreplane never adopts a bucket someone else filled."""
    names.bucket_name(name, "name", "body")
    tags = check_tags(tags or {})
    if encryption not in (None, "SSE-S3"):
        raise Rejected.field(
            "encryption must be 'SSE-S3' or null", "encryption", "unknown encryption", "body"
        )
    if quota_bytes is None and storage.settings.default_quota_gb is not None:
        quota_bytes = int(storage.settings.default_quota_gb * GB)
    check_quota(quota_bytes)
    if session.get(StorageBucket, name) is not None:
        raise Conflict(f"bucket {name!r} is managed by coreplane already")
    if storage.call("bucket_exists", name, storage.client.bucket_exists, name):
        raise Conflict(f"bucket {name!r} exists on the S3 server already: pick another name")
    storage.call("make_bucket", name, storage.client.make_bucket, name)
    try:
        _configure(storage, name, tags, versioning, encryption)
    except Exception:
        # The row will not be committed: leave no half-made bucket on the server either.
        storage.call("remove_bucket", name, storage.client.remove_bucket, name)
        raise
    details = {"tags": tags, "versioning": versioning, "encryption": encryption}
    return record(session, name, actor=actor, role=role, quota_bytes=quota_bytes, details=details)


def record(
    session: Session,
    name: str,
    *,
    actor: str,
    role: str | None,
    quota_bytes: int | None = None,
    details: dict[str, Any] | None = None,
) -> StorageBucket:
    """A bucket already made on the server recorded as managed: its row (``quota_bytes``
    as given, None: unlimited), admin on it for ``actor`` unless their ``role`` is admin,
    and the audit (``details`` added to it)."""
    now = utcnow()
    row = StorageBucket(
        name=name, quota_bytes=quota_bytes, used_bytes=0, objects=0, lifecycle=[],
        created_at=now, created_by=actor, updated_at=now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    if role != "admin":
        grant(session, name, f"user:{actor}", "admin", actor=actor)
    audit.record(
        session,
        actor=actor,
        action="storage.bucket.create",
        target=name,
        details={"quota_bytes": quota_bytes, **(details or {})},
    )
    return row


def _configure(
    storage: Storage, name: str, tags: dict[str, str], versioning: bool, encryption: str | None
) -> None:
    client = storage.client
    if versioning:
        config = VersioningConfig(ENABLED)
        storage.call("set_bucket_versioning", name, client.set_bucket_versioning, name, config)
    if tags:
        storage.call("set_bucket_tags", name, client.set_bucket_tags, name, _tags(tags))
    if encryption == "SSE-S3":
        sse = SSEConfig(Rule.new_sse_s3_rule())
        storage.call("set_bucket_encryption", name, client.set_bucket_encryption, name, sse)


def delete(session: Session, storage: Storage, name: str, *, actor: str, force: bool = False) -> None:
    """The bucket gone from the server and the store, with its grants, shares, mirrors (their
    targets stay) and drills. Conflict
    when it holds any object, version or delete marker, unless ``force``: then all of them
    go first."""
    row = session.get(StorageBucket, name)
    if row is None:
        raise NotFound(f"no bucket {name!r} is managed by coreplane")
    client = storage.client
    if storage.call("bucket_exists", name, client.bucket_exists, name):
        removed = empty(storage, name) if force else _refuse_if_not_empty(storage, name)
        storage.call("remove_bucket", name, client.remove_bucket, name)
    else:
        removed = 0  # gone from the server behind coreplane's back: forget it here too
    _forget(session, name)
    session.delete(row)
    audit.record(
        session,
        actor=actor,
        action="storage.bucket.delete",
        target=name,
        details={"force": force, "removed_versions": removed},
    )


def _forget(session: Session, name: str) -> None:
    """Every row that hangs on bucket ``name``: left behind, its scheduled mirrors failed every
    round, and a new bucket of the same name inherited them, its grants and its drills."""
    mirrors = select(StorageMirror.id).where(StorageMirror.bucket == name).scalar_subquery()
    session.execute(sql_delete(StorageMirrorVersion).where(StorageMirrorVersion.mirror_id.in_(mirrors)))
    for model in (StorageDrill, StorageMirror, StorageGrant, StorageShare):
        session.execute(sql_delete(model).where(model.bucket == name))


def _refuse_if_not_empty(storage: Storage, name: str) -> int:
    found = storage.call("list_objects", name, _first_version, storage, name)
    if found is not None:
        raise Conflict(
            f"bucket {name!r} is not empty (it holds {found!r}, counting old versions and delete "
            "markers): delete its objects first, or delete it with force=true"
        )
    return 0


def _first_version(storage: Storage, name: str) -> str | None:
    for item in storage.client.list_objects(name, recursive=True, include_version=True):
        return item.object_name
    return None


def empty(storage: Storage, name: str) -> int:
    """Every version and delete marker in ``name`` removed, 1,000 to a request; how many."""

    def run() -> int:
        count = 0
        doomed = []
        for item in storage.client.list_objects(name, recursive=True, include_version=True):
            if item.object_name is not None:
                doomed.append(DeleteObject(item.object_name, item.version_id))
            if len(doomed) == 1000:  # one DeleteObjects request's worth at a time
                count += _remove_batch(storage, name, doomed)
                doomed = []
        return count + _remove_batch(storage, name, doomed)

    return storage.call("remove_objects", name, run)


def remove_batch(storage: Storage, name: str, doomed: list[DeleteObject]) -> list[DeleteError]:
    """``doomed`` (1,000 at most: one DeleteObjects request) removed from ``name``; what the
    server could not remove (a version already gone is not a failure)."""
    return list(storage.client.remove_objects(name, doomed))


def _remove_batch(storage: Storage, name: str, doomed: list[DeleteObject]) -> int:
    for failed in remove_batch(storage, name, doomed):
        raise Conflict(f"could not empty bucket {name!r}: {failed.name} {failed.code} {failed.message}")
    return len(doomed)


def set_tags(session: Session, storage: Storage, name: str, tags: dict[str, str], *, actor: str) -> None:
    """Replace the bucket's tags on the server (an empty dict removes them); audited."""
    row = _row(session, name)
    tags = check_tags(tags)
    client = storage.client
    if tags:
        storage.call("set_bucket_tags", name, client.set_bucket_tags, name, _tags(tags))
    else:
        storage.call("delete_bucket_tags", name, client.delete_bucket_tags, name)
    row.updated_at = utcnow()
    audit.record(session, actor=actor, action="storage.bucket.tags", target=name, details={"tags": tags})


def set_quota(session: Session, name: str, quota_bytes: int | None, *, actor: str) -> StorageBucket:
    """The bucket's quota (None: unlimited), enforced by coreplane on later uploads; audited."""
    row = _row(session, name)
    check_quota(quota_bytes)
    before, row.quota_bytes, row.updated_at = row.quota_bytes, quota_bytes, utcnow()
    audit.record(
        session,
        actor=actor,
        action="storage.bucket.quota",
        target=name,
        details={"quota_bytes": quota_bytes, "was": before},
    )
    return row


def summary(storage: Storage, row: StorageBucket) -> dict[str, Any]:
    """The bucket as the API and the console show it: the row, and what the server says of
    its versioning, default encryption and tags."""
    name, client = row.name, storage.client
    versioning = storage.call("get_bucket_versioning", name, client.get_bucket_versioning, name).status
    encryption = storage.call("get_bucket_encryption", name, client.get_bucket_encryption, name)
    tags = storage.call("get_bucket_tags", name, client.get_bucket_tags, name)
    algorithm = encryption.rule.sse_algorithm if encryption is not None and encryption.rule else None
    return {
        **as_dict(row),
        "versioning": versioning if versioning in ("Enabled", "Suspended") else "Off",
        "encryption": "SSE-S3" if algorithm == "AES256" else (algorithm or None),
        "tags": dict(tags or {}),
    }


def as_dict(row: StorageBucket) -> dict[str, Any]:
    """The row alone, with no call to the server (for lists)."""
    return {
        "name": row.name,
        "quota_bytes": row.quota_bytes,
        "used_bytes": row.used_bytes,
        "objects": row.objects,
        "usage_at": row.usage_at.isoformat() if row.usage_at else None,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
    }


def managed(session: Session, only: set[str] | None = None, limit: int | None = None) -> list[StorageBucket]:
    """The managed buckets by name (``only``: just those names; None: all), the first
    ``limit`` of them when given."""
    query = select(StorageBucket).order_by(StorageBucket.name).limit(limit)
    if only is not None:
        query = query.where(StorageBucket.name.in_(only))
    return list(session.scalars(query))


def check_tags(tags: dict[str, str], field: str = "tags") -> dict[str, str]:
    """``tags`` when S3 would take them as a bucket's tags; Rejected naming the bad one."""
    if len(tags) > MAX_TAGS:
        raise TooLarge.field(
            f"{len(tags)} tags; a bucket holds {MAX_TAGS} at most", field, "too many", "body"
        )
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise Rejected.field(
                "tag keys and values must be strings", f"{field}.{key}", "not a string", "body"
            )
        if not key or len(key) > TAG_KEY_MAX or len(value) > TAG_VALUE_MAX:
            raise Rejected.field(
                f"tag {key[:40]!r}: keys are 1-{TAG_KEY_MAX} characters, values at most {TAG_VALUE_MAX}",
                f"{field}.{key[:40]}",
                "bad tag",
                "body",
            )
        if not (key + value).isprintable():
            raise Rejected.field(
                f"tag {key[:40]!r} holds a control character", f"{field}.{key[:40]}", "bad tag", "body"
            )
    return dict(tags)


def check_quota(quota_bytes: int | None, field: str = "quota_bytes") -> int | None:
    if quota_bytes is not None and not 0 < quota_bytes <= MAX_QUOTA_BYTES:
        raise Rejected.field(
            f"a quota is 1 to {MAX_QUOTA_BYTES} bytes, or null for none", field, "out of range", "body"
        )
    return quota_bytes


def _tags(tags: dict[str, str]) -> Tags:
    found = Tags.new_bucket_tags()
    found.update(tags)
    return found


def _row(session: Session, name: str) -> StorageBucket:
    row = session.get(StorageBucket, name)
    if row is None:
        raise NotFound(f"no bucket {name!r} is managed by coreplane")
    return row
