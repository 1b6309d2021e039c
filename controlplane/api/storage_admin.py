"""A bucket's configuration (versioning, the anonymous-read policy, lifecycle rules,
default encryption) and its versions (list, restore, undelete). Routes only: the use cases
are in controlplane/storage/{versions,policy,lifecycle,encryption}.py. Reads need read on
the bucket, restore and undelete write, configuration admin (controlplane/storage/access.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from controlplane.api.deps import caller_of, storage_of
from controlplane.storage import encryption, lifecycle, objects, policy, versions
from controlplane.storage.access import Caller, require
from controlplane.storage.client import Storage
from controlplane.web import DB_SESSION, READ_SESSION

router = APIRouter(prefix="/storage", tags=["storage"])

Bucket = Annotated[str, Path(min_length=3, max_length=63, description="A managed bucket.")]
STORAGE = Depends(storage_of)
CALLER = Depends(caller_of)


class VersioningIn(BaseModel):
    status: str = Field(description="Enabled or Suspended.", max_length=20)


class RestoreIn(BaseModel):
    key: str = Field(max_length=2048)
    version_id: str = Field(max_length=200, description="The version that becomes the latest again.")


class UndeleteIn(BaseModel):
    key: str = Field(max_length=2048)


class PolicyIn(BaseModel):
    anonymous_read: list[str] = Field(
        max_length=policy.MAX_PREFIXES * 5,  # the use case names the limit; this bounds the parse
        description=f"Key prefixes anyone may GET without a credential ({policy.MAX_PREFIXES} at most).",
    )


class LifecycleIn(BaseModel):
    rules: list[Any] = Field(
        max_length=lifecycle.MAX_RULES * 5,  # the use case names the limit; this bounds the parse
        description='[{"id", "prefix", "expire_days"?, "noncurrent_days"?, "enabled"}]',
    )


class RunIn(BaseModel):
    dry_run: bool = Field(True, description="List what would go without deleting it.")


class EncryptionIn(BaseModel):
    default: str | None = Field(description='"SSE-S3", or null for none.', max_length=20)


# -- versioning -----------------------------------------------------------------------------


@router.get("/buckets/{bucket}/versioning")
def read_versioning(
    bucket: Bucket, caller: Caller = CALLER, storage: Storage = STORAGE, session: Session = READ_SESSION
) -> dict[str, str]:
    require(session, caller, bucket, "read")
    return {"status": versions.status(storage, bucket)}


@router.put("/buckets/{bucket}/versioning")
def set_versioning(
    bucket: Bucket,
    body: VersioningIn,
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = DB_SESSION,
) -> dict[str, str]:
    row = require(session, caller, bucket, "admin")
    return {"status": versions.set_status(session, storage, row, body.status, actor=caller.name)}


@router.get("/{bucket}/versions")
def list_versions(
    bucket: Bucket,
    prefix: Annotated[str, Query(max_length=2048)] = "",
    key_marker: Annotated[
        str | None, Query(max_length=2048, description="`next` of the page before.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=versions.MAX_LIMIT)] = versions.DEFAULT_LIMIT,
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = READ_SESSION,
) -> dict[str, Any]:
    """Versions and delete markers, newest first per key, whole keys per page."""
    require(session, caller, bucket, "read")
    return versions.listing(storage, bucket, prefix=prefix, key_marker=key_marker, limit=limit)


@router.post("/{bucket}/versions/restore")
def restore_version(
    bucket: Bucket,
    body: RestoreIn,
    sse_c_key: Annotated[str | None, Header(alias=objects.SSE_C_HEADER, max_length=100)] = None,
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    """The version's bytes and metadata written as the key's new latest version."""
    row = require(session, caller, bucket, "write")
    ssec = objects.sse_c(sse_c_key)
    made = versions.restore(session, storage, row, body.key, body.version_id, actor=caller.name, ssec=ssec)
    return made.as_dict()


@router.post("/{bucket}/versions/undelete")
def undelete(
    bucket: Bucket,
    body: UndeleteIn,
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    """The key's latest delete marker removed; 409 when the latest is not one."""
    row = require(session, caller, bucket, "write")
    return versions.undelete(session, storage, row, body.key, actor=caller.name)


# -- the anonymous-read policy ----------------------------------------------------------------


@router.get("/buckets/{bucket}/policy")
def read_policy(
    bucket: Bucket, caller: Caller = CALLER, storage: Storage = STORAGE, session: Session = READ_SESSION
) -> dict[str, Any]:
    """The structured form and the raw policy the server holds."""
    require(session, caller, bucket, "read")
    return policy.read(storage, bucket)


@router.put("/buckets/{bucket}/policy")
def set_policy(
    bucket: Bucket,
    body: PolicyIn,
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    row = require(session, caller, bucket, "admin")
    return policy.put(session, storage, row, body.anonymous_read, actor=caller.name)


@router.delete("/buckets/{bucket}/policy", status_code=204)
def delete_policy(
    bucket: Bucket, caller: Caller = CALLER, storage: Storage = STORAGE, session: Session = DB_SESSION
) -> None:
    row = require(session, caller, bucket, "admin")
    policy.remove(session, storage, row, actor=caller.name)


# -- lifecycle -------------------------------------------------------------------------------


@router.get("/buckets/{bucket}/lifecycle")
def read_lifecycle(
    bucket: Bucket, caller: Caller = CALLER, storage: Storage = STORAGE, session: Session = READ_SESSION
) -> dict[str, Any]:
    """coreplane's rules, whether the server took them, and what the server holds."""
    row = require(session, caller, bucket, "read")
    return lifecycle.read(storage, row)


@router.put("/buckets/{bucket}/lifecycle")
def set_lifecycle(
    bucket: Bucket,
    body: LifecycleIn,
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    row = require(session, caller, bucket, "admin")
    return lifecycle.set_rules(session, storage, row, body.rules, actor=caller.name)


@router.post("/buckets/{bucket}/lifecycle/run")
def run_lifecycle(
    bucket: Bucket,
    body: RunIn | None = None,
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    """The rules applied now: what would go (dry_run, the default) or what went."""
    row = require(session, caller, bucket, "admin")
    dry_run = body.dry_run if body is not None else True
    return lifecycle.run(session, storage, row, dry_run=dry_run, actor=caller.name)


# -- default encryption ---------------------------------------------------------------------


@router.get("/buckets/{bucket}/encryption")
def read_encryption(
    bucket: Bucket, caller: Caller = CALLER, storage: Storage = STORAGE, session: Session = READ_SESSION
) -> dict[str, Any]:
    require(session, caller, bucket, "read")
    return encryption.read(storage, bucket)


@router.put("/buckets/{bucket}/encryption")
def set_encryption(
    bucket: Bucket,
    body: EncryptionIn,
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    row = require(session, caller, bucket, "admin")
    return encryption.set_default(session, storage, row, body.default, actor=caller.name)
