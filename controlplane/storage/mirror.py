"""Mirrors: a bucket copied, every version and its metadata, to a second bucket on the same
S3 endpoint ("primary") or on ``storage.mirror_endpoint`` ("mirror"), incrementally and on a
schedule. Objects always stream (get → put with the response as the reader): the two
endpoints may be different servers, so no server-side copy, and no object is ever whole in
memory.

A run copies only the source versions no earlier run copied (``StorageMirrorVersion`` rows
remember them), oldest first per key so the target's latest is the source's latest; a delete
marker becomes a delete on the target, and a key gone from the source altogether too. Each
copy carries the source's version id and ETag in its metadata (``coreplane-source-*``), so
the target says on its own where each object came from. SSE-C objects cannot be read
without their key: they are skipped and reported by key, on every run until they change.

Every function takes the caller's session and never commits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from minio import Minio
from minio.commonconfig import ENABLED
from minio.datatypes import Object
from minio.deleteobjects import DeleteObject
from minio.sse import SseS3
from minio.versioningconfig import VersioningConfig
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from urllib3 import BaseHTTPResponse

from controlplane import audit
from controlplane.clock import utcnow
from controlplane.errors import Conflict, NotFound, Rejected, TooLarge, Unavailable
from controlplane.storage import metrics, names, objects
from controlplane.storage.client import Storage
from controlplane.store.models import StorageBucket, StorageMirror, StorageMirrorVersion

INTERVAL_MIN_S, INTERVAL_MAX_S = 60, 7 * 86400
MAX_MIRRORS = 200  # in all: each one is a listing of its bucket per run
MAX_LISTED = 200_000  # source versions one run looks at; past it the run fails, saying so
MAX_COPIES_PER_RUN = 10_000  # versions copied per run; the rest on the next
MAX_DUE_PER_ROUND = 5  # scheduled mirrors one round of the storage loop runs
REPORTED_KEYS = 20  # skipped keys named in a report
DELETE_BATCH = 1000  # keys of one DeleteObjects request, and of one DELETE ... IN
META = "x-amz-meta-"
SOURCE_META_NAME = "coreplane-source-"  # what a mirror adds to each copy's metadata
SOURCE_META = META + SOURCE_META_NAME
NULL_VERSION = "null"


# -- the mirrors ------------------------------------------------------------------------


def create(
    session: Session,
    storage: Storage,
    bucket: StorageBucket,
    *,
    target_bucket: str,
    target_endpoint: str = "primary",
    interval_s: int | None = None,
    actor: str,
) -> StorageMirror:
    """A mirror of ``bucket``; its target bucket made when missing (versioned when the
    source is). Refused: mirroring a bucket onto itself, a target another mirror or a
    managed bucket already uses, a bad name or interval."""
    names.bucket_name(target_bucket, "target_bucket", "body")
    client = storage.target(target_endpoint)
    if interval_s is not None and not INTERVAL_MIN_S <= interval_s <= INTERVAL_MAX_S:
        raise Rejected.field(
            f"interval_s is {INTERVAL_MIN_S} to {INTERVAL_MAX_S} seconds, or null to run on demand only",
            "interval_s",
            "out of range",
            "body",
        )
    if same_place(storage, target_endpoint, target_bucket, bucket.name):
        raise Rejected.field(
            "a bucket cannot be mirrored onto itself: pick another target_bucket",
            "target_bucket",
            "same as the source",
            "body",
        )
    _check_target_free(session, storage, target_endpoint, target_bucket)
    if len(session.scalars(select(StorageMirror.id)).all()) >= MAX_MIRRORS:
        raise TooLarge(f"there are {MAX_MIRRORS} mirrors, the most coreplane runs")
    _ensure_target(storage, client, bucket.name, target_bucket)
    now = utcnow()
    mirror = StorageMirror(
        bucket=bucket.name, target_endpoint=target_endpoint, target_bucket=target_bucket,
        interval_s=interval_s, next_run_at=now if interval_s else None, last_report={},
        created_at=now, created_by=actor,
    )  # fmt: skip
    session.add(mirror)
    session.flush()
    audit.record(session, actor=actor, action="storage.mirror.create", target=bucket.name,
                 details={"mirror": str(mirror.id), "target": f"{target_endpoint}:{target_bucket}",
                          "interval_s": interval_s})  # fmt: skip
    return mirror


def address(storage: Storage, endpoint: str) -> str:
    """The host:port behind a ``target_endpoint``: "mirror" may name the primary's server
    (as in the tests), and a bucket is the same bucket there whichever client reaches it."""
    storage.target(endpoint)  # refuses an unknown endpoint, naming the field
    return (
        (storage.settings.mirror_endpoint or storage.endpoint) if endpoint == "mirror" else storage.endpoint
    )


def same_place(storage: Storage, endpoint: str, bucket: str, other: str) -> bool:
    """Whether ``endpoint``'s ``bucket`` is the primary's ``other``."""
    return bucket == other and address(storage, endpoint) == storage.endpoint


def _check_target_free(session: Session, storage: Storage, endpoint: str, target: str) -> None:
    taken = session.scalars(select(StorageMirror).where(StorageMirror.target_bucket == target)).all()
    for other in taken:
        if address(storage, other.target_endpoint) == address(storage, endpoint):
            raise Conflict(f"mirror {other.id} of {other.bucket!r} writes to {target!r} already")
    if address(storage, endpoint) == storage.endpoint and session.get(StorageBucket, target) is not None:
        raise Rejected.field(
            f"{target!r} is a managed bucket: a mirror writes to a bucket of its own",
            "target_bucket",
            "managed bucket",
            "body",
        )


def _ensure_target(storage: Storage, client: Minio, source: str, target: str) -> None:
    """The target bucket, made when missing; versioned whenever the source is."""
    status = storage.call(
        "get_bucket_versioning", source, storage.client.get_bucket_versioning, source
    ).status
    if not storage.call("bucket_exists", target, client.bucket_exists, target):
        storage.call("make_bucket", target, client.make_bucket, target)
    if status == "Enabled":
        config = VersioningConfig(ENABLED)
        storage.call("set_bucket_versioning", target, client.set_bucket_versioning, target, config)


def get(session: Session, mirror_id: uuid.UUID) -> StorageMirror:
    found = session.get(StorageMirror, mirror_id)
    if found is None:
        raise NotFound(f"no mirror {mirror_id}")
    return found


def listing(session: Session, buckets: set[str] | None) -> list[StorageMirror]:
    """The mirrors of ``buckets`` (None: all), by bucket."""
    query = select(StorageMirror).order_by(StorageMirror.bucket, StorageMirror.created_at)
    if buckets is not None:
        query = query.where(StorageMirror.bucket.in_(buckets))
    return list(session.scalars(query))


def remove(session: Session, mirror: StorageMirror, *, actor: str) -> None:
    """Forget the mirror (its target bucket and what it holds stay: they are a backup)."""
    session.execute(delete(StorageMirrorVersion).where(StorageMirrorVersion.mirror_id == mirror.id))
    session.delete(mirror)
    audit.record(session, actor=actor, action="storage.mirror.delete", target=mirror.bucket,
                 details={"mirror": str(mirror.id), "target": mirror.target_bucket})  # fmt: skip


def as_dict(mirror: StorageMirror) -> dict[str, Any]:
    def when(at: datetime | None) -> str | None:
        return at.isoformat() if at else None

    return {
        "id": str(mirror.id),
        "bucket": mirror.bucket,
        "target_endpoint": mirror.target_endpoint,
        "target_bucket": mirror.target_bucket,
        "interval_s": mirror.interval_s,
        "next_run_at": when(mirror.next_run_at),
        "last_run_at": when(mirror.last_run_at),
        "last_ok_at": when(mirror.last_ok_at),
        "last_error": mirror.last_error,
        "last_report": mirror.last_report or {},
        "created_at": when(mirror.created_at),
        "created_by": mirror.created_by,
    }


# -- a run ------------------------------------------------------------------------------


@dataclass
class Report:
    copied: int = 0  # versions
    bytes: int = 0
    deletes: int = 0
    skipped: int = 0
    skipped_keys: list[str] = field(default_factory=list)
    more: bool = False  # past MAX_COPIES_PER_RUN: the next run goes on
    seconds: float = 0.0

    def skip(self, key: str) -> None:
        self.skipped += 1
        if len(self.skipped_keys) < REPORTED_KEYS and key not in self.skipped_keys:
            self.skipped_keys.append(key)

    def as_dict(self) -> dict[str, Any]:
        return {"copied": self.copied, "bytes": self.bytes, "deletes": self.deletes,
                "skipped": self.skipped, "skipped_keys": self.skipped_keys, "more": self.more,
                "seconds": round(self.seconds, 3)}  # fmt: skip


def run(session: Session, storage: Storage, mirror: StorageMirror, *, actor: str) -> dict[str, Any]:
    """Copy what changed in the source since the last run; the report (also kept on the
    mirror, with last_run_at and last_ok_at or last_error), audited. A failure part way
    keeps what was copied (recorded, so never copied twice) and is reported, not raised."""
    started, report, error = time.perf_counter(), Report(), None
    now = utcnow()
    try:
        _copy_changes(session, storage, mirror, report)
    except (Unavailable, NotFound, Conflict, Rejected, TooLarge) as exc:
        error = str(exc)
    report.seconds = time.perf_counter() - started
    mirror.last_run_at = now
    mirror.last_report = {**report.as_dict(), **({"error": error} if error else {})}
    mirror.last_error = error
    if error is None:
        # The target holds everything the source held when the listing was taken (now).
        mirror.last_ok_at = now
    if mirror.interval_s:
        mirror.next_run_at = now + timedelta(seconds=mirror.interval_s)
    audit.record(session, actor=actor, action="storage.mirror.run", target=mirror.bucket,
                 details={"mirror": str(mirror.id), **mirror.last_report})  # fmt: skip
    return mirror.last_report


def tick(session: Session, storage: Storage) -> None:
    """The storage loop's mirror round: each scheduled mirror whose time has come, a few
    per round (the rest are still due next round), each run in a transaction of its own on
    the loop session's engine (that session is left unused): a run's rows are committed
    before the next run streams, instead of one transaction (and on SQLite the write lock)
    held across every run of the round."""
    engine = session.get_bind()
    with Session(engine) as reading, reading.begin():
        due = reading.scalars(
            select(StorageMirror.id)
            .where(StorageMirror.interval_s.is_not(None), StorageMirror.next_run_at <= utcnow())
            .order_by(StorageMirror.next_run_at)
            .limit(MAX_DUE_PER_ROUND)
        ).all()
    for mirror_id in due:
        with Session(engine) as own, own.begin():
            mirror = own.get(StorageMirror, mirror_id)
            if mirror is not None:  # removed meanwhile: nothing to run
                run(own, storage, mirror, actor="storage-loop")


def versions(storage: Storage, client: Minio, bucket: str, prefix: str = "") -> dict[str, list[Object]]:
    """Every version and delete marker of ``bucket`` by key, oldest first."""

    def listed() -> list[Object]:
        found = []
        for item in client.list_objects(bucket, prefix=prefix, recursive=True, include_version=True):
            found.append(item)
            if len(found) > MAX_LISTED:
                raise TooLarge(f"bucket {bucket!r} holds over {MAX_LISTED} versions, more than one run lists")
        return found

    by_key: dict[str, list[tuple[int, Object]]] = {}
    for rank, item in enumerate(storage.call("list_object_versions", bucket, listed)):
        if item.object_name is not None:
            by_key.setdefault(item.object_name, []).append((rank, item))
    return {key: [item for _, item in sorted(found, key=_age)] for key, found in by_key.items()}


def _age(ranked: tuple[int, Object]) -> tuple[datetime, bool, int]:
    # S3 lists a key's versions newest first, but the SDK hands object versions and delete
    # markers over as two runs, and the server's times are whole seconds: order by time,
    # then the latest last, then (versions among themselves) the listing's order reversed.
    rank, item = ranked
    when = item.last_modified or datetime.min
    return (when.replace(tzinfo=None), str(item.is_latest).lower() == "true", -rank)


def _mark(item: Object) -> str:
    return item.version_id or NULL_VERSION


def _copy_changes(session: Session, storage: Storage, mirror: StorageMirror, report: Report) -> None:
    client = storage.target(mirror.target_endpoint)
    done = {
        (row.key, row.version_id): row
        for row in session.scalars(
            select(StorageMirrorVersion).where(StorageMirrorVersion.mirror_id == mirror.id)
        )
    }
    source = versions(storage, storage.client, mirror.bucket)
    for key, history in source.items():
        for item in history:
            row = done.get((key, _mark(item)))
            if row is not None and (item.is_delete_marker or row.etag == _etag(item)):
                continue
            if report.copied + report.deletes >= MAX_COPIES_PER_RUN:
                report.more = True
                return
            if _apply(storage, client, mirror, item, report):
                _remember(session, mirror, item, row)
    _mirror_vanished(session, storage, client, mirror, done, source, report)


def _apply(storage: Storage, client: Minio, mirror: StorageMirror, item: Object, report: Report) -> bool:
    """One source version onto the target; False when it was skipped."""
    key, target = item.object_name or "", mirror.target_bucket
    if item.is_delete_marker:
        storage.call("mirror.delete", target, client.remove_object, target, key)
        report.deletes += 1
        return True
    try:
        size = stream_copy(
            storage, storage.client, mirror.bucket, key, client, target, key,
            version_id=item.version_id, extra=_provenance(item),
        )  # fmt: skip
    except Rejected as exc:
        if exc.reason != "InvalidArgument":  # what a GET of an SSE-C object without its key gets
            raise
        report.skip(key)
        return False
    report.copied += 1
    report.bytes += size
    return True


def _provenance(item: Object) -> dict[str, str]:
    return {f"{SOURCE_META}version": _mark(item), f"{SOURCE_META}etag": _etag(item) or ""}


def _etag(item: Object) -> str | None:
    return item.etag.strip('"') if item.etag else None


def _remember(
    session: Session, mirror: StorageMirror, item: Object, row: StorageMirrorVersion | None
) -> None:
    if row is None:
        row = StorageMirrorVersion(mirror_id=mirror.id, key=item.object_name, version_id=_mark(item))
        session.add(row)
    row.etag = None if item.is_delete_marker else _etag(item)
    row.size = item.size or 0
    row.last_modified = (item.last_modified or utcnow()).replace(tzinfo=None)
    row.mirrored_at = utcnow()


def _mirror_vanished(
    session: Session,
    storage: Storage,
    client: Minio,
    mirror: StorageMirror,
    done: dict[tuple[str, str], StorageMirrorVersion],
    source: dict[str, list[Object]],
    report: Report,
) -> None:
    """Keys mirrored once and gone from the source altogether (every version removed):
    deleted on the target too, so its latest matches (its old versions stay)."""
    gone = sorted({key for key, _ in done if key not in source})
    if not gone:
        return
    target = mirror.target_bucket

    def remove() -> None:
        doomed = [DeleteObject(key) for key in gone]
        for start in range(0, len(doomed), DELETE_BATCH):
            for failed in client.remove_objects(target, doomed[start : start + DELETE_BATCH]):
                raise Conflict(
                    f"could not delete {failed.name!r} from {target!r}: {failed.code} {failed.message}"
                )

    storage.call("mirror.delete", target, remove)
    report.deletes += len(gone)
    for start in range(0, len(gone), DELETE_BATCH):
        session.execute(
            delete(StorageMirrorVersion).where(
                StorageMirrorVersion.mirror_id == mirror.id,
                StorageMirrorVersion.key.in_(gone[start : start + DELETE_BATCH]),
            )
        )


def source_etags(
    session: Session, mirror: StorageMirror, keys: list[str]
) -> dict[str, tuple[str | None, int]]:
    """key -> (ETag, size) of the source version whose copy is the target's latest of that key
    (the last one the mirror copied: newest source change, then newest copy), as recorded."""
    found: dict[str, tuple[str | None, int]] = {}
    v = StorageMirrorVersion
    for start in range(0, len(keys), DELETE_BATCH):
        rows = session.execute(
            select(v.key, v.etag, v.size)
            .where(
                v.mirror_id == mirror.id, v.etag.is_not(None), v.key.in_(keys[start : start + DELETE_BATCH])
            )
            .order_by(v.key, v.last_modified, v.mirrored_at)
        )
        for key, etag, size in rows:
            found[key] = (etag, size)  # the last of each key wins
    return found


# -- streaming one object across (mirror, drill, restore) -----------------------------------


@dataclass
class Head:
    """What a GET answer's headers say of the object: what a copy of it must carry."""

    size: int
    content_type: str | None
    metadata: dict[str, str]  # x-amz-meta-* without the prefix, a mirror's provenance left out
    sse: SseS3 | None  # SSE-S3 when the object has it

    @classmethod
    def of(cls, headers: Any) -> Head:
        found = objects.user_metadata(headers)
        return cls(
            size=int(headers.get("content-length", "0")),
            content_type=headers.get("content-type"),
            metadata={k: v for k, v in found.items() if not k.startswith(SOURCE_META_NAME)},
            sse=SseS3() if headers.get("x-amz-server-side-encryption") == "AES256" else None,
        )


@contextmanager
def opened(
    storage: Storage, op: str, client: Minio, bucket: str, key: str, version_id: str | None = None
) -> Iterator[tuple[BaseHTTPResponse, Head]]:
    """A GET of ``bucket``/``key`` (timed as ``op``), its answer and what its headers say;
    the connection released after (mirror, drill and restore all read objects this way)."""
    response = storage.call(op, bucket, client.get_object, bucket, key, version_id=version_id)
    try:
        yield response, Head.of(response.headers)
    finally:
        response.close()
        response.release_conn()


def stream_copy(
    storage: Storage,
    src: Minio,
    src_bucket: str,
    src_key: str,
    dst: Minio,
    dst_bucket: str,
    dst_key: str,
    *,
    version_id: str | None = None,
    extra: dict[str, str] | None = None,
) -> int:
    """One object from ``src`` to ``dst``, streamed part by part (the GET's answer is the
    PUT's reader), with its content type, user metadata (``extra`` added, full header names)
    and SSE-S3; its size."""
    with opened(storage, "mirror.get", src, src_bucket, src_key, version_id) as (response, head):
        metadata: dict[str, Any] = {**{META + k: v for k, v in head.metadata.items()}, **(extra or {})}
        storage.call(
            "mirror.put", dst_bucket, dst.put_object, dst_bucket, dst_key, response, head.size,
            content_type=head.content_type or "application/octet-stream",
            metadata=metadata or None, sse=head.sse, part_size=objects.part_size(storage, head.size),
        )  # fmt: skip
    metrics.BYTES.labels("out", metrics.bucket_label(src_bucket)).inc(head.size)
    metrics.BYTES.labels("in", metrics.bucket_label(dst_bucket)).inc(head.size)
    return head.size


def latest(storage: Storage, client: Minio, bucket: str, prefix: str = "") -> Iterable[Object]:
    """The latest version of each key in ``bucket`` (no delete markers), by key."""

    def listed() -> list[Object]:
        found = []
        for item in client.list_objects(bucket, prefix=prefix, recursive=True):
            found.append(item)
            if len(found) > MAX_LISTED:
                raise TooLarge(f"bucket {bucket!r} holds over {MAX_LISTED} objects, more than one pass lists")
        return found

    return storage.call("list_objects", bucket, listed)
