"""Sharing objects: presigned URLs and revocable share links.

A presigned URL is signed with coreplane's S3 key; the server honours it until it expires
and nothing can take it back. A share link (``/s/{token}``) is coreplane's own: each use is
checked against the store (expiry, revocation, download count), counted, audited, and then
redirected to a fresh presigned GET that lives only ``storage.presign_ttl_s``. Revoking a
link kills it at once; what it already handed out dies within that short lifetime.

Only the token's sha256 is stored; the token is shown once, when the link is made.

A presigned PUT bypasses coreplane, so coreplane cannot count what it stores: it is
refused on a bucket with a quota, and when ``storage.max_object_gb`` is below what one S3
PUT may store (5 GiB). The usage of a bucket written that way is counted at its next full
count."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.auth import digest
from controlplane.errors import Conflict, NotFound, Rejected, TooLarge
from controlplane.settings import Settings
from controlplane.storage import access, names, objects
from controlplane.storage.access import Caller
from controlplane.storage.client import Storage
from controlplane.store.models import StorageShare

TOKEN_MAX_CHARS = 100  # secrets.token_urlsafe(32) is 43: anything longer is not ours
DEFAULT_SHARE_S = 86400
MAX_DOWNLOADS = 1_000_000
MAX_LIVE_SHARES = 10_000  # per bucket: links neither revoked nor expired
LIST_MAX = 1000
SINGLE_PUT_MAX_BYTES = 5 * 1024**3  # S3's limit on one PUT: all a presigned PUT can send
STATES = ("active", "expired", "revoked", "exhausted")
METHODS = ("GET", "PUT")


# -- rules (pure) ---------------------------------------------------------------------------


def state_of(share: StorageShare, now: datetime) -> str:
    """revoked, expired, exhausted (no download left) or active: the first that holds."""
    if share.revoked_at is not None:
        return "revoked"
    if share.expires_at <= now:
        return "expired"
    if share.max_downloads is not None and share.downloads >= share.max_downloads:
        return "exhausted"
    return "active"


def expiry(expires_s: int, most_s: int, field: str = "expires_s") -> timedelta:
    """``expires_s`` as a duration when it is 1..``most_s``; Rejected naming ``field``."""
    if not 1 <= expires_s <= most_s:
        raise Rejected.field(
            f"{field} must be 1 to {most_s} seconds; got {expires_s}", field, "out of range", "body"
        )
    return timedelta(seconds=expires_s)


def download_cap(max_downloads: int | None) -> int | None:
    if max_downloads is not None and not 1 <= max_downloads <= MAX_DOWNLOADS:
        raise Rejected.field(
            f"max_downloads must be 1 to {MAX_DOWNLOADS:,} (or left out: no limit); got {max_downloads}",
            "max_downloads",
            "out of range",
            "body",
        )
    return max_downloads


def presigned_put_refusal(quota_bytes: int | None, max_object_gb: float) -> str | None:
    """Why a presigned PUT may not go to a bucket (None: it may). The upload goes straight
    to the server, so coreplane can neither refuse it past the quota nor past the size cap."""
    if quota_bytes is not None:
        return (
            "the bucket has a quota, which a presigned PUT would bypass (the upload goes straight "
            "to the S3 server): upload through PUT /api/v1/storage/{bucket}/objects/{key}, or lift the quota"
        )
    if max_object_gb * 1024**3 < SINGLE_PUT_MAX_BYTES:
        return (
            f"objects are capped at {max_object_gb:g} GB (storage.max_object_gb), below the 5 GiB a "
            "presigned PUT can store, and the server cannot enforce coreplane's cap: upload through "
            "the API"
        )
    return None


def link(settings: Settings, base_url: str, token: str) -> str:
    """The share link a person opens: ``<base>/s/<token>``, on ``server.public_url`` when
    it is set (the address people reach), else the request's ``base_url``."""
    base = settings.server.public_url or base_url
    return f"{base.rstrip('/')}/s/{token}"


def _state_filter(state: str, now: datetime) -> ColumnElement[bool]:
    """The SQL twin of ``state_of``: rows in ``state`` and no other."""
    live = StorageShare.revoked_at.is_(None)
    unexpired = StorageShare.expires_at > now
    used_up = and_(
        StorageShare.max_downloads.is_not(None), StorageShare.downloads >= StorageShare.max_downloads
    )
    if state == "revoked":
        return StorageShare.revoked_at.is_not(None)
    if state == "expired":
        return and_(live, StorageShare.expires_at <= now)
    if state == "exhausted":
        return and_(live, unexpired, used_up)
    return and_(live, unexpired, ~used_up)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() + "Z" if at else None


def as_dict(share: StorageShare, now: datetime) -> dict[str, Any]:
    """A share as the API and the console show it: never its token."""
    return {
        "id": str(share.id),
        "bucket": share.bucket,
        "key": share.key,
        "version_id": share.version_id,
        "state": state_of(share, now),
        "created_at": _iso(share.created_at),
        "created_by": share.created_by,
        "expires_at": _iso(share.expires_at),
        "max_downloads": share.max_downloads,
        "downloads": share.downloads,
        "last_download_at": _iso(share.last_download_at),
        "revoked_at": _iso(share.revoked_at),
        "revoked_by": share.revoked_by,
    }


# -- presigned URLs -------------------------------------------------------------------------


def presign(
    session: Session,
    storage: Storage,
    caller: Caller,
    bucket: str,
    key: str,
    *,
    method: str,
    expires_s: int,
    version_id: str | None = None,
    client: str | None = None,
    now: datetime,
) -> dict[str, Any]:
    """A presigned GET (read on the bucket) or PUT (write) URL for ``key``, valid
    ``expires_s`` (1..storage.presign_max_s); audited without the URL."""
    names.bucket_name(bucket, "bucket", "body")
    names.object_key(key, "key", "body")
    if method not in METHODS:
        raise Rejected.field("method must be GET or PUT", "method", "unknown method", "body")
    lifetime = expiry(expires_s, storage.settings.presign_max_s)
    row = access.require(session, caller, bucket, "read" if method == "GET" else "write")
    if method == "PUT":
        refusal = presigned_put_refusal(row.quota_bytes, storage.settings.max_object_gb)
        if refusal:
            raise Conflict(f"no presigned PUT on bucket {bucket!r}: {refusal}")
        url = storage.call("presign_put", bucket, storage.client.presigned_put_object, bucket, key, lifetime)
    else:
        url = storage.call(
            "presign_get", bucket, storage.client.presigned_get_object, bucket, key, lifetime,
            version_id=version_id,
        )  # fmt: skip
    audit.record(
        session, actor=caller.name, action="storage.presign", target=bucket, client=client,
        details={"key": key, "method": method, "expires_s": expires_s, "version_id": version_id},
    )  # fmt: skip
    return {"url": url, "expires_at": _iso(now + lifetime)}


# -- share links ----------------------------------------------------------------------------


def create(
    session: Session,
    storage: Storage,
    caller: Caller,
    bucket: str,
    key: str,
    *,
    version_id: str | None = None,
    expires_s: int = DEFAULT_SHARE_S,
    max_downloads: int | None = None,
    client: str | None = None,
    now: datetime,
) -> tuple[StorageShare, str]:
    """A share link to an existing object (write on the bucket) and its token, which is
    shown once: only its digest is stored. Audited."""
    names.bucket_name(bucket, "bucket", "body")
    names.object_key(key, "key", "body")
    lifetime = expiry(expires_s, storage.settings.share_max_days * 86400)
    download_cap(max_downloads)
    access.require(session, caller, bucket, "write")
    _live_count_below_cap(session, bucket, now)
    _must_exist(storage, bucket, key, version_id)
    token = secrets.token_urlsafe(32)
    share = StorageShare(
        token_digest=digest(token), bucket=bucket, key=key, version_id=version_id, created_at=now,
        created_by=caller.name, expires_at=now + lifetime, max_downloads=max_downloads, downloads=0,
    )  # fmt: skip
    session.add(share)
    session.flush()
    audit.record(
        session, actor=caller.name, action="storage.share.create", target=bucket, client=client,
        details={"share": str(share.id), "key": key, "version_id": version_id,
                 "expires_at": _iso(share.expires_at), "max_downloads": max_downloads},
    )  # fmt: skip
    return share, token


def _live_count_below_cap(session: Session, bucket: str, now: datetime) -> None:
    live = session.scalar(
        select(func.count()).where(
            StorageShare.bucket == bucket, StorageShare.revoked_at.is_(None), StorageShare.expires_at > now
        )
    )
    if (live or 0) >= MAX_LIVE_SHARES:
        raise TooLarge(
            f"bucket {bucket!r} has {live} live share links, the most it may hold: revoke some first"
        )


def _must_exist(storage: Storage, bucket: str, key: str, version_id: str | None) -> None:
    """NotFound when the object (version) is missing; a stat the server refuses (a malformed
    version id, or an object encrypted with a customer key (SSE-C), which a share link could
    not serve anyway: it cannot carry the key) is Rejected naming the body's field."""
    try:
        objects.stat(storage, bucket, key, version_id=version_id)
    except Rejected as exc:
        if version_id is not None:
            raise Rejected.field(
                f"the S3 server refused version_id {version_id[:80]!r} of {key[:80]!r}: it is malformed, "
                "or the object is encrypted with a customer key (SSE-C), which a link cannot carry",
                "version_id",
                "refused by the server",
                "body",
            ) from exc
        raise Rejected.field(
            f"object {key[:80]!r} cannot be shared: the server will not describe it without its "
            "customer key (SSE-C), and a share link cannot carry that key",
            "key",
            "customer-key encrypted",
            "body",
        ) from exc


def listing(
    session: Session,
    caller: Caller,
    *,
    bucket: str | None = None,
    key: str | None = None,
    state: str | None = None,
    limit: int = 100,
    now: datetime,
) -> list[dict[str, Any]]:
    """Shares, newest first: of ``bucket`` (read on it; of its ``key`` only, when given),
    else of every bucket the caller holds a grant on (an admin: all)."""
    if state is not None and state not in STATES:
        raise Rejected.field(f"state must be one of {', '.join(STATES)}", "state", "unknown state")
    if not 1 <= limit <= LIST_MAX:
        raise Rejected.field(f"limit must be 1 to {LIST_MAX}", "limit", "out of range")
    if key is not None and bucket is None:
        raise Rejected.field("key needs its bucket", "key", "no bucket")
    query = select(StorageShare).order_by(StorageShare.created_at.desc(), StorageShare.id).limit(limit)
    if bucket is not None:
        access.require(session, caller, names.bucket_name(bucket, "bucket", "query"), "read")
        query = query.where(StorageShare.bucket == bucket)
        if key is not None:
            query = query.where(StorageShare.key == key)
    else:
        seen = access.visible(session, caller)
        if seen is not None:
            query = query.where(StorageShare.bucket.in_(sorted(seen)))
    if state is not None:
        query = query.where(_state_filter(state, now))
    return [as_dict(share, now) for share in session.scalars(query)]


def get(session: Session, caller: Caller, share_id: uuid.UUID, level: str = "read") -> StorageShare:
    """One share, when ``caller`` holds ``level`` on its bucket."""
    share = session.get(StorageShare, share_id)
    if share is None:
        raise NotFound(f"no share link {share_id}")
    access.require(session, caller, share.bucket, level)
    return share


def revoke(
    session: Session,
    caller: Caller,
    share_id: uuid.UUID,
    *,
    bucket: str | None = None,
    client: str | None = None,
    now: datetime,
) -> StorageShare:
    """Kill a share link now (write on its bucket); Conflict when it was revoked already.
    ``bucket``, when the caller knows it (the console's bucket page), is checked instead of
    looking the share up first: a share of another bucket is then NotFound. Audited."""
    if bucket is None:
        bucket = get(session, caller, share_id, "write").bucket
    else:
        access.require(session, caller, bucket, "write")
    share = session.scalars(
        update(StorageShare)
        .where(StorageShare.id == share_id, StorageShare.bucket == bucket, StorageShare.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=caller.name)
        .returning(StorageShare)
    ).first()
    if share is None:
        was = session.get(StorageShare, share_id)
        if was is None or was.bucket != bucket:
            raise NotFound(f"no share link {share_id} in bucket {bucket!r}")
        raise Conflict(
            f"share link {share_id} was revoked already, at {_iso(was.revoked_at)} by {was.revoked_by}"
        )
    audit.record(
        session, actor=caller.name, action="storage.share.revoke", target=share.bucket, client=client,
        details={"share": str(share.id), "key": share.key, "downloads": share.downloads},
    )  # fmt: skip
    return share


# -- opening a link (/s/{token}) ------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    """What opening a link came to: its ``state`` ("active", as in ``STATES``, or why it is
    dead: unknown, expired, revoked, exhausted, missing), a sentence for the person who
    opened it, and the presigned ``url`` when a download was counted. The HTTP edge gives
    each state its status."""

    state: str
    detail: str
    url: str | None = None


_DEAD = {
    "unknown": "no such share link",
    "revoked": "this share link was revoked",
    "expired": "this share link has expired",
    "exhausted": "this share link has no downloads left",
    "missing": "the shared object no longer exists",
}


def _dead(state: str) -> Opened:
    return Opened(state, _DEAD[state])


def look_up(session: Session, token: str, now: datetime) -> tuple[StorageShare | None, Opened]:
    """The share a token opens and what opening it would come to (nothing counted): the
    check HEAD answers with. A token too long to be ours is unknown without a lookup."""
    if not token or len(token) > TOKEN_MAX_CHARS:
        return None, _dead("unknown")
    share = session.scalars(select(StorageShare).where(StorageShare.token_digest == digest(token))).first()
    if share is None:
        return None, _dead("unknown")
    state = state_of(share, now)
    if state != "active":
        return share, _dead(state)
    return share, Opened(state, "this share link is live")


def open_link(
    session: Session, storage: Storage, token: str, *, client: str | None = None, now: datetime
) -> Opened:
    """Count one download and give a fresh presigned GET valid ``storage.presign_ttl_s``;
    a dead link's state without counting. The count is one conditional UPDATE, so
    concurrent openers never take more downloads than are left. An object deleted since
    the link was made is "missing", and costs no download."""
    share, opened = look_up(session, token, now)
    if share is None or opened.state != "active":
        return opened
    try:
        objects.stat(storage, share.bucket, share.key, version_id=share.version_id)
    except NotFound:
        return _dead("missing")
    taken = session.execute(
        update(StorageShare)
        .where(
            StorageShare.id == share.id,
            StorageShare.revoked_at.is_(None),
            StorageShare.expires_at > now,
            or_(StorageShare.max_downloads.is_(None), StorageShare.downloads < StorageShare.max_downloads),
        )
        .values(downloads=StorageShare.downloads + 1, last_download_at=now)
        .returning(StorageShare.downloads)
        .execution_options(synchronize_session=False)
    ).scalar()
    if taken is None:  # another opener took the last download (or revoked it) meanwhile
        session.refresh(share)
        state = state_of(share, now)
        return _dead("exhausted" if state == "active" else state)
    url = _presign_download(storage, share)
    audit.record(
        session, actor=f"share:{share.id}", action="storage.share.download", target=share.bucket,
        client=client, details={"key": share.key, "version_id": share.version_id, "download": taken},
    )  # fmt: skip
    return Opened("active", "redirecting to the object", url)


def _presign_download(storage: Storage, share: StorageShare) -> str:
    return storage.call(
        "presign_get", share.bucket, storage.client.presigned_get_object, share.bucket, share.key,
        timedelta(seconds=storage.settings.presign_ttl_s),
        response_headers={"response-content-disposition": objects.content_disposition(share.key)},
        version_id=share.version_id,
    )  # fmt: skip
