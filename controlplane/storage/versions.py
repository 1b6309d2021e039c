"""Versioning: a bucket's versioning state, its versions and delete markers listed newest
first per key, a previous version restored as the new latest, and an object undeleted by
removing its latest delete marker. Every function takes the caller's session (when it
writes) and never commits; every S3 call goes through ``Storage.call``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from minio.commonconfig import ENABLED
from minio.datatypes import Object
from minio.sse import SseCustomerKey
from minio.versioningconfig import SUSPENDED, VersioningConfig
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.errors import Conflict, NotFound, Rejected
from controlplane.storage import names, objects
from controlplane.storage.client import Storage
from controlplane.storage.objects import ObjectInfo
from controlplane.store.models import StorageBucket

STATES = ("Enabled", "Suspended")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# The SDK asks the server for versions 1,000 at a time, and a truncated page holds exactly
# that many: reading whole pages keeps each key's delete markers with its versions (the SDK
# yields a page's versions first, then its delete markers).
SERVER_PAGE = 1000
# Entries read for one page of the API at most. A key with more versions than this shows
# its newest MAX_SCAN and the next page starts after the key: a key_marker cannot resume
# inside a key (that would need S3's version-id-marker in the API's paging).
MAX_SCAN = 5 * SERVER_PAGE


def status(storage: Storage, bucket: str) -> str:
    """ "Enabled", "Suspended" or "Off" (never enabled)."""
    found = storage.call("get_bucket_versioning", bucket, storage.client.get_bucket_versioning, bucket)
    return found.status if found.status in STATES else "Off"


def set_status(session: Session, storage: Storage, row: StorageBucket, state: str, *, actor: str) -> str:
    """Turn versioning on ("Enabled") or pause it ("Suspended": S3 never turns it off once
    on); audited. Rejected naming ``status`` for anything else."""
    if state not in STATES:
        raise Rejected.field(
            f"status must be {' or '.join(STATES)} (a bucket's versioning cannot go back to off)",
            "status",
            "unknown status",
            "body",
        )
    was = status(storage, row.name)
    config = VersioningConfig(ENABLED if state == "Enabled" else SUSPENDED)
    storage.call("set_bucket_versioning", row.name, storage.client.set_bucket_versioning, row.name, config)
    audit.record(
        session,
        actor=actor,
        action="storage.versioning",
        target=row.name,
        details={"status": state, "was": was},
    )
    return state


def aware(when: datetime | None) -> datetime:
    """A listing's time as an aware UTC datetime (the epoch when the server gave none)."""
    if when is None:
        return datetime.fromtimestamp(0, UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def newest_first(rows: Iterable[ObjectInfo]) -> list[ObjectInfo]:
    """By key, then the latest first and the rest newest first (the server's order kept
    among equal times: its times are whole seconds)."""
    return sorted(rows, key=lambda r: (r.key, not r.is_latest, -aware(r.last_modified).timestamp()))


def scan(storage: Storage, bucket: str, *, prefix: str = "", key_marker: str | None = None,
         cap: int, whole_key: bool = False) -> tuple[list[ObjectInfo], bool]:  # fmt: skip
    """Every version and delete marker under ``prefix`` after ``key_marker``, reading whole
    server pages until ``cap`` entries (with ``whole_key``: and on until past the first key
    read, so one key's versions are not cut at ``cap``, MAX_SCAN at most); and whether more
    remain."""
    listed = storage.client.list_objects(
        bucket, prefix=prefix or None, recursive=True, include_version=True, start_after=key_marker
    )
    return storage.call("list_object_versions", bucket, _read, bucket, listed, cap, whole_key)


def _read(bucket: str, listed: Iterator[Object], cap: int, whole_key: bool) -> tuple[list[ObjectInfo], bool]:
    rows: list[ObjectInfo] = []
    keys: set[str] = set()
    for found in listed:
        row = objects.info_of(bucket, found.object_name or "", found)
        rows.append(row)
        keys.add(row.key)
        if len(rows) % SERVER_PAGE:
            continue  # only whole pages: a page's delete markers come after its versions
        if len(rows) >= cap and (not whole_key or len(keys) > 1 or len(rows) >= MAX_SCAN):
            return rows, True
    return rows, False


def listing(storage: Storage, bucket: str, *, prefix: str = "", key_marker: str | None = None,
            limit: int = DEFAULT_LIMIT) -> dict[str, Any]:  # fmt: skip
    """A page of versions and delete markers, whole keys only (a key's versions are never
    split across pages), newest first per key: {"versions", "next"} where ``next`` is the
    ``key_marker`` of the next page (None: the last page)."""
    names.key_prefix(prefix)
    if key_marker:
        names.key_prefix(key_marker, "key_marker")
    if not 1 <= limit <= MAX_LIMIT:
        raise Rejected.field(f"limit must be 1 to {MAX_LIMIT}", "limit", "out of range")
    rows, more = scan(storage, bucket, prefix=prefix, key_marker=key_marker, cap=limit, whole_key=True)
    keys = [(key, list(group)) for key, group in groupby(newest_first(rows), key=lambda r: r.key)]
    if more and len(keys) > 1:
        keys.pop()  # the last key read may go on in the next server page
    page: list[ObjectInfo] = []
    last = None
    for key, group in keys:
        if len(page) >= limit:
            break
        page.extend(group)
        last = key
    done = not more and last == (keys[-1][0] if keys else None)
    return {"versions": [r.as_dict() for r in page], "next": None if done else last}


def versions_of(storage: Storage, bucket: str, key: str) -> list[ObjectInfo]:
    """One key's versions and delete markers, newest first (read up to the first server
    page that goes past the key)."""
    rows, _ = scan(storage, bucket, prefix=key, cap=1, whole_key=True)
    return newest_first(r for r in rows if r.key == key)


def restore(session: Session, storage: Storage, row: StorageBucket, key: str, version_id: str, *,
            actor: str, ssec: SseCustomerKey | None = None) -> ObjectInfo:  # fmt: skip
    """``version_id`` of ``key`` copied over it on the server (its bytes and metadata become
    a new latest version; the history stays), within the bucket's quota; an SSE-C version
    needs its key. Audited."""
    names.object_key(key, "key", "body")
    if not version_id or len(version_id) > 200:
        raise Rejected.field("version_id must be a version of the key", "version_id", "bad version", "body")
    try:
        made = objects.copy(
            session, storage, row, key, row, key, actor=actor, version_id=version_id, ssec=ssec
        )
    except NotFound as exc:
        raise NotFound(f"no version {version_id!r} of {key!r} in bucket {row.name!r}") from exc
    except Rejected:
        # The server refuses to describe a delete marker (405) or an SSE-C version without
        # its key: only then is the history read, to say which.
        found = next((v for v in versions_of(storage, row.name, key) if v.version_id == version_id), None)
        if found is None:
            raise NotFound(f"no version {version_id!r} of {key!r} in bucket {row.name!r}") from None
        if found.is_delete_marker:
            raise Conflict(
                f"version {version_id!r} of {key!r} is a delete marker: undelete instead"
            ) from None
        raise
    audit.record(
        session,
        actor=actor,
        action="storage.version.restore",
        target=row.name,
        details={"key": key, "from": version_id, "version_id": made.version_id},
    )
    return made


def undelete(
    session: Session, storage: Storage, row: StorageBucket, key: str, *, actor: str
) -> dict[str, Any]:
    """The latest delete marker of ``key`` removed, so the version before it is current
    again; audited. Conflict when the latest is not a delete marker."""
    names.object_key(key, "key", "body")
    history = versions_of(storage, row.name, key)
    if not history:
        raise NotFound(f"no version of {key!r} in bucket {row.name!r}")
    latest = history[0]
    if not latest.is_delete_marker:
        raise Conflict(f"the latest version of {key!r} is not a delete marker: nothing to undelete")
    storage.call(
        "remove_object", row.name, storage.client.remove_object, row.name, key, version_id=latest.version_id
    )
    after = history[1] if len(history) > 1 else None
    back = after.version_id if after and not after.is_delete_marker else None  # None: still deleted
    audit.record(
        session,
        actor=actor,
        action="storage.version.undelete",
        target=row.name,
        details={"key": key, "marker": latest.version_id, "version_id": back},
    )
    return {"key": key, "removed_marker": latest.version_id, "version_id": back}
