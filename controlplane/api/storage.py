"""Buckets, their grants and quotas, and objects streamed both ways (routes only: the rules
live in controlplane/storage/). Every route checks the bucket's name and the caller's grant
before any call reaches the S3 server; the fixed /storage/buckets paths come before
/storage/{bucket}/... (and the other storage modules' fixed paths before both, app.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.utils import format_datetime
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from minio.sse import Sse, SseS3
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect

from controlplane.api.deps import OPERATOR, Principal, caller_of, storage_of
from controlplane.api.problems import problem
from controlplane.errors import Rejected, TooLarge, Unreadable
from controlplane.storage import access, buckets, names, objects
from controlplane.storage.access import Caller
from controlplane.storage.client import Storage
from controlplane.storage.objects import SSE_C_HEADER, ObjectInfo
from controlplane.web import DB_SESSION, READ_SESSION

router = APIRouter(tags=["storage"])

SSE_HEADER = "X-Coreplane-SSE"
META_HEADER = "x-meta-"
CALLER = Depends(caller_of)
STORAGE = Depends(storage_of)
VersionId = Query(
    None, min_length=1, max_length=1024, description="A version of the object (default: the latest)."
)


class BucketIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="S3 rules: 3-63 of a-z 0-9 . -")
    quota_bytes: int | None = Field(
        None, description="Enforced by coreplane (default: storage.default_quota_gb)."
    )
    tags: dict[str, str] = Field(default_factory=dict, description="At most 50.")
    versioning: bool = Field(False, description="Turn versioning on at once.")


class TagsIn(BaseModel):
    tags: dict[str, str] = Field(description="The bucket's tags, replacing them all ({} removes them).")


class QuotaIn(BaseModel):
    quota_bytes: int | None = Field(description="Bytes the bucket may hold (null: unlimited).")


class GrantIn(BaseModel):
    subject: str = Field(
        min_length=1, max_length=120, description="user:<name> or role:<viewer|operator|admin>"
    )
    level: access.Level


class CopyIn(BaseModel):
    source_key: str = Field(
        min_length=1, max_length=2048, description="The key to copy, in the path's bucket."
    )
    key: str = Field(min_length=1, max_length=2048, description="The new key.")
    bucket: str | None = Field(None, max_length=100, description="The target bucket (default: the same).")
    version_id: str | None = Field(None, min_length=1, max_length=1024, description="The source's version.")


def _bucket(bucket: str) -> str:
    return names.bucket_name(bucket, "bucket", "path")


# -- buckets --------------------------------------------------------------------------------


@router.get("/storage/buckets")
def list_buckets(caller: Caller = CALLER, session: Session = READ_SESSION) -> list[dict[str, Any]]:
    """The buckets the caller holds a grant on (an admin: all of them)."""
    return [buckets.as_dict(row) for row in buckets.managed(session, access.visible(session, caller))]


@router.post("/storage/buckets", status_code=201)
def create_bucket(
    body: BucketIn,
    who: Principal = Depends(OPERATOR),
    storage: Storage = STORAGE,
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    """A new bucket (the operator role at least); its creator gets admin on it."""
    row = buckets.create(
        session, storage, body.name, actor=who.name, quota_bytes=body.quota_bytes, tags=body.tags,
        versioning=body.versioning, role=who.role,
    )  # fmt: skip
    return buckets.summary(storage, row)


@router.get("/storage/buckets/{bucket}")
def bucket_detail(
    bucket: str, caller: Caller = CALLER, storage: Storage = STORAGE, session: Session = READ_SESSION
) -> dict[str, Any]:
    row, level = access.granted(session, caller, _bucket(bucket), "read")
    return {**buckets.summary(storage, row), "level": level}


@router.delete("/storage/buckets/{bucket}")
def delete_bucket(
    bucket: str,
    force: bool = Query(False, description="Remove every object, version and delete marker first."),
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    """The bucket gone (admin on it): 409 when it holds anything, unless force=true."""
    access.require(session, caller, _bucket(bucket), "admin")
    buckets.delete(session, storage, bucket, actor=caller.name, force=force)
    return {"deleted": bucket}


@router.put("/storage/buckets/{bucket}/tags")
def put_tags(
    bucket: str,
    body: TagsIn,
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    access.require(session, caller, _bucket(bucket), "admin")
    buckets.set_tags(session, storage, bucket, body.tags, actor=caller.name)
    return {"bucket": bucket, "tags": body.tags}


@router.put("/storage/buckets/{bucket}/quota")
def put_quota(
    bucket: str, body: QuotaIn, caller: Caller = CALLER, session: Session = DB_SESSION
) -> dict[str, Any]:
    access.require(session, caller, _bucket(bucket), "admin")
    return buckets.as_dict(buckets.set_quota(session, bucket, body.quota_bytes, actor=caller.name))


@router.get("/storage/buckets/{bucket}/grants")
def list_grants(
    bucket: str, caller: Caller = CALLER, session: Session = READ_SESSION
) -> list[dict[str, Any]]:
    access.require(session, caller, _bucket(bucket), "admin")
    return [_grant(g) for g in access.grants(session, bucket)]


@router.put("/storage/buckets/{bucket}/grants")
def put_grant(
    bucket: str, body: GrantIn, caller: Caller = CALLER, session: Session = DB_SESSION
) -> dict[str, Any]:
    """Give a user or a role a level on the bucket (replacing what it held there)."""
    access.require(session, caller, _bucket(bucket), "admin")
    return _grant(access.grant(session, bucket, body.subject, body.level, actor=caller.name))


@router.delete("/storage/buckets/{bucket}/grants")
def delete_grant(
    bucket: str,
    subject: str = Query(min_length=1, max_length=120),
    caller: Caller = CALLER,
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    access.require(session, caller, _bucket(bucket), "admin")
    access.revoke(session, bucket, subject, actor=caller.name)
    return {"bucket": bucket, "revoked": subject}


def _grant(found: Any) -> dict[str, Any]:
    return {
        "bucket": found.bucket,
        "subject": found.subject,
        "level": found.level,
        "created_at": found.created_at.isoformat() if found.created_at else None,
        "created_by": found.created_by,
    }


# -- objects --------------------------------------------------------------------------------


@router.get("/storage/{bucket}/objects")
def list_objects(
    bucket: str,
    prefix: str = Query("", max_length=2048),
    delimiter: str = Query(
        "/", max_length=1, description="'/' groups keys by folder; '' lists the whole tree."
    ),
    start_after: str | None = Query(None, max_length=2048, description="The 'next' of the previous page."),
    limit: int = Query(100, ge=1, le=objects.MAX_LIST),
    with_encryption: bool = Query(False, description="Stat each object for its encryption (slower)."),
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = READ_SESSION,
) -> dict[str, Any]:
    access.require(session, caller, _bucket(bucket), "read")
    return objects.listing(
        storage, bucket, prefix=prefix, delimiter=delimiter, start_after=start_after, limit=limit,
        with_encryption=with_encryption,
    )  # fmt: skip


@router.post("/storage/{bucket}/copy", status_code=201)
def copy_object(
    bucket: str,
    body: CopyIn,
    request: Request,
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    """A server-side copy of ``source_key`` (read on this bucket) to ``key`` in ``bucket``
    (write there; default this bucket)."""
    source = access.require(session, caller, _bucket(bucket), "read")
    target_name = names.bucket_name(body.bucket, "bucket", "body") if body.bucket else bucket
    target = access.require(session, caller, target_name, "write")
    ssec = objects.sse_c(request.headers.get(SSE_C_HEADER))
    found = objects.copy(
        session, storage, source, body.source_key, target, body.key, actor=caller.name,
        version_id=body.version_id, ssec=ssec,
    )  # fmt: skip
    return found.as_dict()


@router.put("/storage/{bucket}/objects/{key:path}")
async def put_object(
    request: Request, bucket: str, key: str, caller: Caller = CALLER, storage: Storage = STORAGE
) -> dict[str, Any]:
    """The body streamed to the server as ``key`` (multipart above the part size), never
    held whole: Content-Type kept, X-Meta-<name> headers as metadata, SSE-C with
    X-Coreplane-SSE-C-Key or SSE-S3 with X-Coreplane-SSE: S3. A body shorter or longer than
    its Content-Length, or past the quota, stores nothing."""
    _bucket(bucket)
    names.object_key(key)
    headers = request.headers
    length = _declared_length(request)
    metadata = _metadata(request)
    sse = _sse(request)
    state = request.app.state

    def run() -> ObjectInfo:
        # The store is read only to check the grant, never held while the bytes move.
        with state.read_sessionmaker.begin() as session:
            row = access.require(session, caller, bucket, "write")
        return objects.upload(
            storage, row, key, objects.BodyReader(_body(request)), length=length,
            content_type=headers.get("content-type"), metadata=metadata, sse=sse,
        )  # fmt: skip

    found = await anyio.to_thread.run_sync(run)
    return found.as_dict()


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        # Without this a cut chunked body would look complete and be stored short.
        raise Unreadable("the client went away before the body ended: nothing was stored") from None


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None  # chunked: sent in parts of storage.part_size_mb
    if not declared.isdigit() or len(declared) > 16:
        raise Unreadable.field(
            "Content-Length must be a number of bytes", "Content-Length", "bad length", "header"
        )
    return int(declared)


def _metadata(request: Request) -> dict[str, str]:
    found = [(k, v) for k, v in request.headers.items() if k.lower().startswith(META_HEADER)]
    if len(found) > objects.MAX_METADATA:
        raise TooLarge.field(
            f"{len(found)} X-Meta-* headers; the most is {objects.MAX_METADATA}",
            "X-Meta-*",
            "too many",
            "header",
        )
    return objects.check_metadata({k[len(META_HEADER) :]: v for k, v in found}, "X-Meta-*")


def _sse(request: Request) -> Sse | None:
    customer = objects.sse_c(request.headers.get(SSE_C_HEADER))
    asked = request.headers.get(SSE_HEADER)
    if asked is None:
        return customer
    if asked.upper() != "S3" or customer is not None:
        raise Rejected.field(
            f"{SSE_HEADER} takes 'S3' (server-managed keys), and not together with {SSE_C_HEADER}",
            SSE_HEADER,
            "bad encryption",
            "header",
        )
    return SseS3()


# Two routes on one function (not one with two methods): each gets its own operation id.
@router.get("/storage/{bucket}/objects/{key:path}", response_model=None)
@router.head("/storage/{bucket}/objects/{key:path}", response_model=None)
def get_object(
    request: Request,
    bucket: str,
    key: str,
    version_id: str | None = VersionId,
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = READ_SESSION,
) -> Response:
    """The object's bytes, streamed (HEAD: its headers only); Range: bytes=a-b, a- or -n
    answers 206 with Content-Range, 416 when the object has no such bytes."""
    access.require(session, caller, _bucket(bucket), "read")
    names.object_key(key)
    ssec = objects.sse_c(request.headers.get(SSE_C_HEADER))
    asked = request.headers.get("range")
    if request.method == "HEAD":
        found = objects.stat(storage, bucket, key, version_id=version_id, ssec=ssec)
        span = objects.byte_range(asked, found.size)
        if span == "unsatisfiable":
            return _unsatisfiable(found.size)
        headers = _object_headers(found, span if isinstance(span, tuple) else None)
        return Response(status_code=206 if isinstance(span, tuple) else 200, headers=headers,
                        media_type=found.content_type)  # fmt: skip
    try:
        got = objects.read(storage, bucket, key, asked, version_id=version_id, ssec=ssec)
    except objects.Unsatisfiable as exc:
        return _unsatisfiable(exc.size)
    return StreamingResponse(
        got.chunks,
        status_code=206 if got.span else 200,
        headers=_object_headers(got.info, got.span),
        media_type=got.info.content_type,
    )


def _unsatisfiable(size: int) -> Response:
    answer = problem(416, "Range Not Satisfiable", f"the object is {size} bytes; the range asks past it")
    answer.headers["Content-Range"] = f"bytes */{size}"
    return answer


def _object_headers(found: ObjectInfo, span: tuple[int, int] | None) -> dict[str, str]:
    """The object's answer headers, for all of it or the ``span`` (first, last) of it."""
    start, end = span or (0, found.size - 1)
    headers = {
        "ETag": f'"{found.etag}"',
        "Accept-Ranges": "bytes",
        "X-Coreplane-Encryption": found.encryption,
        # Never rendered as a page of the API's origin, whatever type the uploader claimed.
        "Content-Disposition": objects.content_disposition(found.key),
    }
    if found.last_modified is not None:
        headers["Last-Modified"] = format_datetime(found.last_modified, usegmt=True)
    if found.version_id:
        headers["X-Version-Id"] = found.version_id
    for meta, value in found.metadata.items():
        headers[f"X-Meta-{meta}"] = value
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{found.size}"
    headers["Content-Length"] = str(end - start + 1)
    return headers


@router.delete("/storage/{bucket}/objects/{key:path}")
def delete_object(
    bucket: str,
    key: str,
    version_id: str | None = VersionId,
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    """The object deleted (write on the bucket): with versioning on and no version_id, a
    delete marker; with a version_id, that version for good."""
    row = access.require(session, caller, _bucket(bucket), "write")
    return objects.remove(session, storage, row, key, actor=caller.name, version_id=version_id)
