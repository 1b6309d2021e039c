"""Storage pages: /storage (the buckets the user may see, and a create form for operators)
and /storage/{bucket} (an object browser by prefix with upload, download and delete; each
object's versions and share links; the bucket's shares and settings).

The console user is a storage ``Caller`` by user name and role, so grants to ``user:<name>``
apply here as in the API: every page and form asks ``access.require`` for the level it needs
(403 otherwise, nothing touched); a page that shows more to a higher level asks
``access.granted``, which answers the level too. Credentials never reach the browser: downloads stream
through /storage/{bucket}/download, uploads come in as a form whose file Starlette spools to
disk (bounded memory), and the only URL handed out is a share link's /s/ one, shown once.
Object keys travel in the query string or a form field, never in the path: a key may hold
any '/' and '?' a path would mangle."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from console.render import client_address, render
from console.session import check_csrf, current_user, require_role
from controlplane.clock import utcnow
from controlplane.errors import NotFound, Rejected, TooLarge
from controlplane.storage import (
    access,
    analytics,
    buckets,
    drill,
    encryption,
    mirror,
    names,
    objects,
    policy,
    shares,
    versions,
)
from controlplane.storage.access import Caller
from controlplane.storage.client import Storage, configured
from controlplane.store.models import StorageBucket
from controlplane.web import READ_SESSION

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100  # objects per page of the browser
BUCKETS_LISTED = 200
SHARES_LISTED = 50  # the newest share links of a bucket
VERSIONS_LISTED = 100  # the newest versions of one object
DRILLS_LISTED = 10  # the newest restore drills of a bucket
FIELD_MAX = 2048  # characters of any one text field of a form (a key is at most 1,024 bytes)
FORM_FIELDS_MAX = 20
FORM_OVERHEAD = 1024 * 1024  # a multipart form's own bytes beside the file, at most
GIB = 1024**3
ACTIVITY_WINDOW = "24h"  # one of analytics.WINDOWS


# -- who and what ----------------------------------------------------------------------------


def _caller(request: Request, role: str) -> Caller:
    return Caller(current_user(request), role)


def _storage(request: Request) -> Storage:
    return configured(request.app.state.storage)


def _bucket(name: str) -> str:
    return names.bucket_name(name, "bucket", "path")


def _key(form: dict[str, str], field: str = "key") -> str:
    return names.object_key(form.get(field, ""), field, "form")


def _version(value: str | None) -> str | None:
    # A version id is the server's opaque string: bounded and printable is all we can check.
    if not value:
        return None
    if len(value) > 200 or not value.isprintable():
        raise Rejected.field("version_id is not a version id", "version_id", "bad version id", "form")
    return value


async def _form(request: Request) -> dict[str, str]:
    """A form's text fields (CSRF checked first), each at most FIELD_MAX characters."""
    data = await request.form(max_files=0, max_fields=FORM_FIELDS_MAX)
    form = {k: v for k, v in data.items() if isinstance(v, str)}
    check_csrf(request, form.get("csrf", ""))
    for name, value in form.items():
        if len(value) > FIELD_MAX:
            raise TooLarge(f"field {name!r} is over {FIELD_MAX} characters")
    return form


def _folder(key: str) -> str:
    """The prefix ``key`` lies under ("" at the top)."""
    return key.rsplit("/", 1)[0] + "/" if "/" in key else ""


def _back(bucket: str, **params: str | None) -> str:
    kept = {k: v for k, v in params.items() if v}
    return f"/storage/{bucket}" + (f"?{urlencode(kept)}" if kept else "")


def _object_url(bucket: str, key: str) -> str:
    return f"/storage/{bucket}/object?{urlencode({'key': key})}"


# -- the buckets -----------------------------------------------------------------------------


@router.get("/storage")
def storage_page(request: Request, role: str = Depends(require_role("viewer")),
                 session: Session = READ_SESSION) -> Response:  # fmt: skip
    storage = request.app.state.storage
    if storage is None:  # not configured: a line on the page, never an error page
        return render(request, "storage/buckets.html", {"configured": False, "rows": []})
    # The store's rows alone: no call to the S3 server for a list (a bucket's page shows the rest).
    found = buckets.managed(session, access.visible(session, _caller(request, role)), limit=BUCKETS_LISTED)
    rows = [buckets.as_dict(row) for row in found]
    context = {"configured": True, "rows": rows, "can_create": role in ("operator", "admin"),
               "listed": BUCKETS_LISTED}  # fmt: skip
    return render(request, "storage/buckets.html", context)


def _quota(text: str) -> int | None:
    """The form's GiB in bytes, within buckets' own bounds (None: no quota)."""
    if not text.strip():
        return None
    try:
        quota = int(float(text) * GIB)
    except (ValueError, OverflowError):  # not a number, or nan or inf
        raise Rejected.field("quota_gb must be a number of GiB", "quota_gb", "not a number", "form") from None
    if not 0 < quota <= buckets.MAX_QUOTA_BYTES:  # buckets' own bound, in the form's unit
        most = buckets.MAX_QUOTA_BYTES // GIB
        raise Rejected.field(
            f"quota_gb must be over 0 and at most {most} GiB", "quota_gb", "out of range", "form"
        )
    return quota


@router.post("/storage")
async def create_bucket(request: Request, role: str = Depends(require_role("operator"))) -> Response:
    form = await _form(request)
    name = names.bucket_name(form.get("name", "").strip(), "name", "form")
    quota = _quota(form.get("quota_gb", ""))
    storage = _storage(request)

    def create() -> None:
        # One step: a bucket the server refused a default for is removed again by create.
        with request.app.state.sessionmaker.begin() as session:
            buckets.create(session, storage, name, actor=current_user(request), role=role, quota_bytes=quota,
                           versioning=form.get("versioning") == "on",
                           encryption="SSE-S3" if form.get("encryption") == "on" else None)  # fmt: skip

    await asyncio.to_thread(create)
    return RedirectResponse(f"/storage/{name}", status_code=303)


# -- one bucket: the browser -----------------------------------------------------------------


def crumbs(prefix: str) -> list[tuple[str, str]]:
    """(label, prefix) of each folder down to ``prefix`` ("a/b/" -> a, a/; b, a/b/)."""
    parts = [p for p in prefix.split("/")[:-1]] if prefix else []
    return [(part, "/".join(parts[: i + 1]) + "/") for i, part in enumerate(parts)]


def _settings(session: Session, storage: Storage, row: StorageBucket) -> dict[str, Any]:
    mirrors = mirror.listing(session, {row.name})
    drills = drill.listing(session, {row.name}, limit=DRILLS_LISTED)
    return {"grants": access.grants(session, row.name), "lifecycle": row.lifecycle or [],
            "lifecycle_on_server": row.lifecycle_on_server, "mirrors": mirrors, "drills": drills}  # fmt: skip


def _shares(session: Session, caller: Caller, bucket: str, key: str | None = None) -> list[dict[str, Any]]:
    """The newest share links of the bucket (of one key)."""
    return shares.listing(session, caller, bucket=bucket, key=key, limit=SHARES_LISTED, now=utcnow())


@router.get("/storage/{bucket}")
def bucket_page(
    request: Request,
    bucket: str,
    prefix: str = "",
    start_after: str = "",
    role: str = Depends(require_role("viewer")),
    session: Session = READ_SESSION,
) -> Response:
    _bucket(bucket)
    storage = _storage(request)
    caller = _caller(request, role)
    row, level = access.granted(session, caller, bucket, "read")
    prefix = names.key_prefix(prefix, "prefix", "query")
    if start_after:
        names.object_key(start_after, "start_after", "query")
    found = objects.listing(storage, bucket, prefix=prefix, delimiter="/", start_after=start_after or None,
                            limit=PAGE_SIZE, with_encryption=True)  # fmt: skip
    context = {
        "bucket": bucket, "summary": buckets.summary(storage, row), "prefix": prefix,
        "crumbs": crumbs(prefix), "listing": found, "paged": bool(start_after),
        "next_url": _back(bucket, prefix=prefix, start_after=found["next"]) if found["next"] else None,
        "first_url": _back(bucket, prefix=prefix), "can_write": access.RANK[level] >= access.RANK["write"],
        "is_admin": level == "admin", "shares": _shares(session, caller, bucket),
        **_settings(session, storage, row),
        "public_prefixes": policy.read(storage, bucket)[policy.FIELD],
        "activity": analytics.figures(session, row, ACTIVITY_WINDOW),
    }  # fmt: skip
    return render(request, "storage/bucket.html", context)


@router.post("/storage/{bucket}/upload")
async def upload(request: Request, bucket: str, role: str = Depends(require_role("viewer"))) -> Response:
    """One file from the upload form, stored under the form's prefix by its file name."""
    _bucket(bucket)
    storage, caller = _storage(request), _caller(request, role)

    def allowed() -> StorageBucket:
        with request.app.state.read_sessionmaker.begin() as session:
            row = access.require(session, caller, bucket, "write")
            session.expunge(row)  # kept loaded: objects.upload reads its name, quota and usage
            return row

    # Checked before the body is read: no spooling for a caller refused anyway.
    row = await asyncio.to_thread(allowed)
    limit, why = objects.room(storage, row)  # the object cap, or what the quota has left
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise TooLarge(f"the upload is {declared} bytes with its form: {why}")
    data = await request.form(max_files=1, max_fields=FORM_FIELDS_MAX)
    check_csrf(request, str(data.get("csrf", "")))
    file = data.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        raise Rejected.field("choose a file to upload", "file", "missing", "form")
    prefix = names.key_prefix(str(data.get("prefix", "")), "prefix", "form")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    # A browser sends the file's base name; some send a path: keep the last segment.
    key = names.object_key(prefix + file.filename.replace("\\", "/").rsplit("/", 1)[-1], "file", "form")

    def store() -> None:
        # No store session: the bytes go to the server with no lock of the store held.
        objects.upload(storage, row, key, file.file, length=file.size, content_type=file.content_type or None)

    try:
        await asyncio.to_thread(store)
    finally:
        await file.close()
    return RedirectResponse(_back(bucket, prefix=prefix), status_code=303)


@router.get("/storage/{bucket}/download")
def download(
    request: Request,
    bucket: str,
    key: str = "",
    version_id: str = "",
    role: str = Depends(require_role("viewer")),
    session: Session = READ_SESSION,
) -> Response:
    """The object's bytes streamed through the control plane (never a URL to the server)."""
    _bucket(bucket)
    storage = _storage(request)
    access.require(session, _caller(request, role), bucket, "read")
    key = names.object_key(key, "key", "query")
    info, chunks = objects.download(storage, bucket, key, version_id=_version(version_id))
    headers = {"Content-Disposition": objects.content_disposition(key), "Content-Length": str(info.size),
               "X-Content-Type-Options": "nosniff"}  # fmt: skip
    # application/octet-stream whatever the object says: an uploaded HTML file must not
    # run as a page of the console's origin.
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


# -- one object: versions, shares, delete ----------------------------------------------------


def _stat_or_none(storage: Storage, bucket: str, key: str) -> objects.ObjectInfo | None:
    try:
        return objects.stat(storage, bucket, key)
    except NotFound:
        return None  # gone, or its latest version is a delete marker: the versions say which


@router.get("/storage/{bucket}/object")
def object_page(
    request: Request,
    bucket: str,
    key: str = "",
    role: str = Depends(require_role("viewer")),
    session: Session = READ_SESSION,
) -> Response:
    _bucket(bucket)
    storage, caller = _storage(request), _caller(request, role)
    _row, level = access.granted(session, caller, bucket, "read")
    key = names.object_key(key, "key", "query")
    info = _stat_or_none(storage, bucket, key)
    found = [v.as_dict() for v in versions.versions_of(storage, bucket, key)[:VERSIONS_LISTED]]
    if info is None and not found:
        raise NotFound(f"no object {key!r} in bucket {bucket!r}")
    latest = found[0] if found else None  # newest first
    context = {
        "bucket": bucket, "key": key, "info": info, "versions": found, "folder": _folder(key),
        "versioning": versions.status(storage, bucket),
        "can_write": access.RANK[level] >= access.RANK["write"],
        "deleted": latest is not None and latest["is_delete_marker"],
        "shares": _shares(session, caller, bucket, key),
        "max_days": storage.settings.share_max_days, "max_downloads": shares.MAX_DOWNLOADS,
    }  # fmt: skip
    return render(request, "storage/object.html", context)


@router.post("/storage/{bucket}/delete")
async def delete_object(
    request: Request, bucket: str, role: str = Depends(require_role("viewer"))
) -> Response:
    form = await _form(request)
    _bucket(bucket)
    key, version_id = _key(form), _version(form.get("version_id"))
    if form.get("confirm") != "yes":
        raise Rejected.field("tick 'yes, delete it' to confirm the delete", "confirm", "unconfirmed", "form")
    storage, caller = _storage(request), _caller(request, role)

    def remove() -> bool:
        with request.app.state.sessionmaker.begin() as session:
            row = access.require(session, caller, bucket, "write")
            done = objects.remove(
                session, storage, row, key, actor=current_user(request), version_id=version_id
            )
            return bool(done.get("delete_marker") or done.get("is_delete_marker"))

    marked = await asyncio.to_thread(remove)
    folder = _folder(key) or None
    # A delete marker leaves versions to restore: back to the object's page, where they are.
    target = _object_url(bucket, key) if marked or version_id else _back(bucket, prefix=folder)
    return RedirectResponse(target, status_code=303)


@router.post("/storage/{bucket}/restore")
async def restore_version(
    request: Request, bucket: str, role: str = Depends(require_role("viewer"))
) -> Response:
    """Make an older version the latest again (a copy of it on top), or undelete (remove the
    delete marker that hides the object)."""
    form = await _form(request)
    _bucket(bucket)
    key, version_id = _key(form), _version(form.get("version_id"))
    storage, caller = _storage(request), _caller(request, role)

    def restore() -> None:
        with request.app.state.sessionmaker.begin() as session:
            row = access.require(session, caller, bucket, "write")
            if form.get("op") == "undelete":
                versions.undelete(session, storage, row, key, actor=current_user(request))
            elif version_id is None:
                raise Rejected.field("choose the version to restore", "version_id", "missing", "form")
            else:
                versions.restore(session, storage, row, key, version_id, actor=current_user(request))

    await asyncio.to_thread(restore)
    return RedirectResponse(_object_url(bucket, key), status_code=303)


# -- share links -----------------------------------------------------------------------------


def _positive(form: dict[str, str], field: str, most: int, required: bool) -> int | None:
    text = form.get(field, "").strip()
    if not text and not required:
        return None
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise Rejected.field(f"{field} must be a whole number from 1 to {most}", field, "range", "form")
    return int(text)


@router.post("/storage/{bucket}/shares")
async def create_share(
    request: Request, bucket: str, role: str = Depends(require_role("viewer"))
) -> Response:
    """A revocable /s/ link to one object; its URL is on this answer's page and nowhere else."""
    form = await _form(request)
    _bucket(bucket)
    key, version_id = _key(form), _version(form.get("version_id"))
    storage, caller = _storage(request), _caller(request, role)
    hours = _positive(form, "expires_hours", storage.settings.share_max_days * 24, required=True)
    most = _positive(form, "max_downloads", shares.MAX_DOWNLOADS, required=False)

    def create() -> tuple[str, list[dict[str, Any]]]:
        # In the thread: the store's queries and the S3 stat stay off the event loop.
        with request.app.state.sessionmaker.begin() as session:
            _share, token = shares.create(session, storage, caller, bucket, key, version_id=version_id,
                                          expires_s=(hours or 0) * 3600, max_downloads=most,
                                          client=client_address(request), now=utcnow())  # fmt: skip
            return token, _shares(session, caller, bucket, key)

    token, listed = await asyncio.to_thread(create)
    url = shares.link(request.app.state.settings, str(request.base_url), token)
    # Making a link needed write: the list beside it offers the revoke buttons.
    context = {"bucket": bucket, "key": key, "share_url": url, "shares": listed, "can_write": True}
    answer = render(request, "storage/shared.html", context, status=201)
    answer.headers["Cache-Control"] = "no-store"  # the one copy of the link's token
    return answer


@router.post("/storage/{bucket}/shares/{share_id}/revoke")
async def revoke_share(request: Request, bucket: str, share_id: uuid.UUID,
                       role: str = Depends(require_role("viewer"))) -> Response:  # fmt: skip
    form = await _form(request)
    _bucket(bucket)
    caller = _caller(request, role)

    def revoke() -> None:
        with request.app.state.sessionmaker.begin() as session:
            # bucket=: the link must be one of this bucket's, checked in its one UPDATE.
            shares.revoke(
                session, caller, share_id, bucket=bucket, client=client_address(request), now=utcnow()
            )

    await asyncio.to_thread(revoke)
    back = _object_url(bucket, form["key"]) if form.get("key") else _back(bucket)
    return RedirectResponse(back, status_code=303)


# -- settings (admin) ------------------------------------------------------------------------


def _set_grant(
    session: Session, storage: Storage, row: StorageBucket, form: dict[str, str], by: str
) -> str | None:
    subject, level = form.get("subject", "").strip(), form.get("level", "")
    if level == "none":
        access.revoke(session, row.name, subject, actor=by)
    else:
        access.grant(session, row.name, subject, level, actor=by)
    return None


def _set_quota(
    session: Session, storage: Storage, row: StorageBucket, form: dict[str, str], by: str
) -> str | None:
    buckets.set_quota(session, row.name, _quota(form.get("quota_gb", "")), actor=by)
    return None


def _set_versioning(session: Session, storage: Storage, row: StorageBucket, form: dict[str, str],
                    by: str) -> str | None:  # fmt: skip
    versions.set_status(session, storage, row, form.get("status", ""), actor=by)
    return None


def _set_encryption(session: Session, storage: Storage, row: StorageBucket, form: dict[str, str],
                    by: str) -> str | None:  # fmt: skip
    encryption.set_default(session, storage, row, form.get("default") or None, actor=by)
    return None


def _set_public(
    session: Session, storage: Storage, row: StorageBucket, form: dict[str, str], by: str
) -> None:
    prefixes = [p.strip() for p in form.get("prefixes", "").splitlines() if p.strip()]
    policy.put(session, storage, row, prefixes, actor=by)
    return None


def _delete_bucket(session: Session, storage: Storage, row: StorageBucket, form: dict[str, str],
                   by: str) -> str | None:  # fmt: skip
    # Typing the name is the confirmation: a bucket, its versions and its links go for good.
    if form.get("confirm_name", "").strip() != row.name:
        raise Rejected.field(
            f"type the bucket's name ({row.name}) to delete it", "confirm_name", "unconfirmed", "form"
        )
    buckets.delete(session, storage, row.name, actor=by, force=form.get("force") == "on")
    return "/storage"


# What the bucket's settings forms change (field "op"), each audited by its library.
SETTINGS = {"grant": _set_grant, "quota": _set_quota, "versioning": _set_versioning,
            "encryption": _set_encryption, "public": _set_public, "delete": _delete_bucket}  # fmt: skip


@router.post("/storage/{bucket}/settings")
async def change_settings(
    request: Request, bucket: str, role: str = Depends(require_role("viewer"))
) -> Response:
    """One of the bucket's settings (admin on the bucket)."""
    form = await _form(request)
    _bucket(bucket)
    change = SETTINGS.get(form.get("op", ""))
    if change is None:
        raise Rejected.field(f"op must be one of {', '.join(SETTINGS)}", "op", "unknown", "form")
    storage, caller = _storage(request), _caller(request, role)

    def run() -> str | None:
        with request.app.state.sessionmaker.begin() as session:
            row = access.require(session, caller, bucket, "admin")
            return change(session, storage, row, form, current_user(request))

    target = await asyncio.to_thread(run)
    return RedirectResponse(target or _back(bucket) + "#settings", status_code=303)
