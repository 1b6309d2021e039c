"""Restore drills: a mirror's latest versions restored into a fresh bucket, then every
object compared with the source bucket's latest (SHA-256 of both streamed, size, content type
and user metadata), so a backup is proven by its bytes, not assumed.

What a drill measures:
- RTO: the restore's seconds (what getting the data back would take);
- RPO: the drill's start minus the mirror's last good run (how much recent data a restore
  now would lose), and ``rpo_data_s``, what the data shows: the start minus the oldest source
  change the restore lacked (0 when it lacked none).

A drill runs synchronously (the API runs it in a worker thread) and is capped at
``MAX_OBJECTS`` objects; past that it fails, saying so. The drill bucket is removed at the
end unless the caller keeps it (it then becomes a managed bucket). The store is written only
after the S3 work, so a long drill holds no store lock while it streams.

Every function takes the caller's session and never commits."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import datetime
from typing import Any

from minio import Minio
from minio.datatypes import Object
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.clock import utcnow
from controlplane.errors import Conflict, NotFound, Rejected, TooLarge, Unavailable
from controlplane.storage import buckets, names
from controlplane.storage import mirror as mirrors
from controlplane.storage.client import Storage
from controlplane.store.models import StorageDrill, StorageMirror

MAX_OBJECTS = 10_000
MAX_MISMATCHES = 20  # kept on the drill, with the key and why
CHUNK = 1024 * 1024
MAX_LIST = 200


def run(
    session: Session,
    storage: Storage,
    mirror: StorageMirror,
    *,
    actor: str,
    keep: bool = False,
    role: str | None = None,
) -> StorageDrill:
    """Restore ``mirror`` into a fresh bucket and compare it with the source; the drill row
    (passed or failed, with its figures), audited. A kept drill bucket becomes a managed
    bucket of ``actor`` (at ``role``); otherwise it is removed."""
    started = utcnow()
    drill = StorageDrill(
        bucket=mirror.bucket, mirror_id=mirror.id, restored_bucket=drill_bucket(mirror.bucket),
        started_at=started, objects=0, bytes=0, mismatches=[], actor=actor,
        rpo_s=(started - mirror.last_ok_at).total_seconds() if mirror.last_ok_at else None,
    )  # fmt: skip
    # The store is written only once the S3 work is done: a long drill must not hold the
    # store's write lock (SQLite's is the whole database) while it streams.
    made = False
    try:
        storage.call("make_bucket", drill.restored_bucket, storage.client.make_bucket, drill.restored_bucket)
        made = True
        _restore_and_compare(storage, mirror, drill)
    except (Unavailable, NotFound, Conflict, Rejected) as exc:
        drill.state, drill.error = "failed", str(exc)
    finally:
        if made and not keep:
            discard(storage, drill.restored_bucket)
    if made and keep:
        _manage(session, storage, drill.restored_bucket, actor=actor, role=role)
    drill.finished_at = utcnow()
    session.add(drill)
    session.flush()
    audit.record(session, actor=actor, action="storage.drill", target=mirror.bucket, details={
        "drill": str(drill.id), "state": drill.state, "objects": drill.objects, "bytes": drill.bytes,
        "rpo_s": drill.rpo_s, "rto_s": drill.rto_s, "kept": made and keep,
    })  # fmt: skip
    return drill


def _manage(session: Session, storage: Storage, name: str, *, actor: str, role: str | None) -> None:
    """A kept drill bucket recorded as managed as buckets.create records one (the default
    quota, its owner admin on it, audited)."""
    default = storage.settings.default_quota_gb
    quota = None if default is None else int(default * buckets.GB)
    buckets.record(session, name, actor=actor, role=role, quota_bytes=quota, details={"drill": True})


def discard(storage: Storage, name: str) -> None:
    """A drill bucket emptied and removed."""
    buckets.empty(storage, name)
    storage.call("remove_bucket", name, storage.client.remove_bucket, name)


def drill_bucket(source: str) -> str:
    """``<source>-drill-<short id>``, the source cut so the name stays within S3's 63."""
    stem = source[:46].rstrip("-.")
    return names.bucket_name(f"{stem}-drill-{uuid.uuid4().hex[:8]}", "bucket", "body")


def _restore_and_compare(storage: Storage, mirror: StorageMirror, drill: StorageDrill) -> None:
    target = storage.target(mirror.target_endpoint)
    started = time.perf_counter()
    for item in _capped(mirrors.latest(storage, target, mirror.target_bucket)):
        key = item.object_name or ""
        drill.bytes += mirrors.stream_copy(
            storage, target, mirror.target_bucket, key, storage.client, drill.restored_bucket, key
        )
        drill.objects += 1
    drill.rto_s = time.perf_counter() - started
    mismatches, oldest = compare(storage, mirror.bucket, drill.restored_bucket)
    drill.mismatches = mismatches[:MAX_MISMATCHES]
    drill.rpo_data_s = (drill.started_at - oldest).total_seconds() if oldest else 0.0
    drill.state = "failed" if mismatches else "passed"
    if mismatches:
        drill.error = f"{len(mismatches)} object(s) differ from the source"


def _capped(items: Any) -> list[Object]:
    found = list(items)
    if len(found) > MAX_OBJECTS:
        raise TooLarge(f"the mirror holds {len(found)} objects; a drill restores {MAX_OBJECTS} at most")
    return found


def compare(storage: Storage, source: str, restored: str) -> tuple[list[dict[str, str]], datetime | None]:
    """Each object of ``source`` and ``restored`` (both on the primary) that differs, with
    why, and the oldest source change among them (None: none dated)."""
    client = storage.client
    ours = {o.object_name or "": o for o in _capped(mirrors.latest(storage, client, source))}
    theirs = {o.object_name or "": o for o in _capped(mirrors.latest(storage, client, restored))}
    mismatches: list[dict[str, str]] = []
    oldest: datetime | None = None
    for key in sorted(ours.keys() | theirs.keys()):
        why = _differs(storage, client, source, ours.get(key), restored, theirs.get(key))
        if why is None:
            continue
        mismatches.append({"key": key, "why": why})
        changed = ours[key].last_modified if key in ours else None
        if changed is not None:
            changed = changed.replace(tzinfo=None)
            oldest = changed if oldest is None else min(oldest, changed)
    return mismatches, oldest


def _differs(
    storage: Storage, client: Minio, source: str, ours: Object | None, restored: str, theirs: Object | None
) -> str | None:
    if ours is None:
        return "in the restore but not in the source (deleted since the mirror ran)"
    if theirs is None:
        return "missing from the restore (written since the mirror ran, or SSE-C, which a mirror skips)"
    if ours.size != theirs.size:
        return f"size {theirs.size} in the restore, {ours.size} in the source"
    key = ours.object_name or ""
    try:
        mine = _fingerprint(storage, client, source, key)
    except Rejected:
        return "the source object cannot be read (SSE-C without its key)"
    other = _fingerprint(storage, client, restored, key)
    for what, index in (("SHA-256", 0), ("content type", 1), ("metadata", 2)):
        if mine[index] != other[index]:
            return f"{what} differs"
    return None


def _fingerprint(storage: Storage, client: Minio, bucket: str, key: str) -> tuple[str, str, dict[str, str]]:
    """(SHA-256, content type, user metadata) of an object, its body streamed."""
    with mirrors.opened(storage, "drill.get", client, bucket, key) as (response, head):

        def digest() -> str:
            found = hashlib.sha256()
            for chunk in response.stream(CHUNK):
                found.update(chunk)
            return found.hexdigest()

        return storage.call("drill.read", bucket, digest), head.content_type or "", head.metadata


def get(session: Session, drill_id: uuid.UUID) -> StorageDrill:
    found = session.get(StorageDrill, drill_id)
    if found is None:
        raise NotFound(f"no drill {drill_id}")
    return found


def listing(session: Session, buckets_in: set[str] | None, limit: int = 50) -> list[StorageDrill]:
    """The latest drills of ``buckets_in`` (None: all), newest first."""
    query = select(StorageDrill).order_by(StorageDrill.started_at.desc()).limit(min(limit, MAX_LIST))
    if buckets_in is not None:
        query = query.where(StorageDrill.bucket.in_(buckets_in))
    return list(session.scalars(query))


def as_dict(drill: StorageDrill) -> dict[str, Any]:
    return {
        "id": str(drill.id),
        "bucket": drill.bucket,
        "mirror_id": str(drill.mirror_id) if drill.mirror_id else None,
        "restored_bucket": drill.restored_bucket,
        "started_at": drill.started_at.isoformat(),
        "finished_at": drill.finished_at.isoformat() if drill.finished_at else None,
        "state": drill.state,
        "objects": drill.objects,
        "bytes": drill.bytes,
        "mismatches": drill.mismatches or [],
        "rpo_s": drill.rpo_s,
        "rpo_data_s": drill.rpo_data_s,
        "rto_s": drill.rto_s,
        "error": drill.error,
        "actor": drill.actor,
    }
