"""Backups of buckets: mirrors (made, listed, run now, removed), restore drills, and the
preview of a ``storage.restore`` action (which is then asked for through POST
/api/v1/actions). Routes only: the use cases are controlplane/storage/{mirror,drill,restore}.py.
Everything here needs admin on the mirrored bucket (controlplane/storage/access.py).

A mirror run and a drill run synchronously in a worker thread, each capped (a run copies
10,000 versions at most, the rest on the next run; a drill restores 10,000 objects at most)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from controlplane.api.deps import caller_of, storage_of
from controlplane.storage import access, drill, mirror, names, restore
from controlplane.storage.access import Caller
from controlplane.storage.client import Endpoint, Storage
from controlplane.web import DB_SESSION, READ_SESSION

router = APIRouter(prefix="/storage", tags=["storage"])

STORAGE = Depends(storage_of)
CALLER = Depends(caller_of)


class MirrorIn(BaseModel):
    bucket: str = Field(min_length=1, max_length=100, description="The managed bucket to mirror.")
    target_bucket: str = Field(min_length=1, max_length=100, description="Made when missing.")
    target_endpoint: Endpoint = Field(
        "primary", description="primary: the same S3 endpoint; mirror: COREPLANE_STORAGE__MIRROR_ENDPOINT."
    )
    interval_s: int | None = Field(
        None, description=f"Run every so many seconds ({mirror.INTERVAL_MIN_S}-{mirror.INTERVAL_MAX_S}); "
        "null: on demand only."
    )  # fmt: skip


class DrillIn(BaseModel):
    mirror_id: uuid.UUID
    keep: bool = Field(False, description="Keep the restored bucket (a managed bucket) after the drill.")


class RestorePreviewIn(BaseModel):
    target_bucket: str | None = Field(None, max_length=100, description="The mirrored bucket by default.")
    prefix: str = Field("", max_length=2048, description="Only keys under it.")
    overwrite: bool = Field(False, description="Overwrite existing objects that differ from the mirror's.")


def _mirror(session: Session, caller: Caller, mirror_id: uuid.UUID) -> Any:
    found = mirror.get(session, mirror_id)
    access.require(session, caller, found.bucket, "admin")
    return found


# -- mirrors ---------------------------------------------------------------------------------


@router.post("/mirrors", status_code=201)
def create_mirror(
    body: MirrorIn, caller: Caller = CALLER, storage: Storage = STORAGE, session: Session = DB_SESSION
) -> dict[str, Any]:
    names.bucket_name(body.bucket, "bucket", "body")
    row = access.require(session, caller, body.bucket, "admin")
    made = mirror.create(
        session, storage, row, target_bucket=body.target_bucket, target_endpoint=body.target_endpoint,
        interval_s=body.interval_s, actor=caller.name,
    )  # fmt: skip
    return mirror.as_dict(made)


@router.get("/mirrors")
def list_mirrors(
    bucket: str | None = Query(None, max_length=63), caller: Caller = CALLER, session: Session = READ_SESSION
) -> list[dict[str, Any]]:
    if bucket is not None:
        access.require(session, caller, bucket, "admin")
        return [mirror.as_dict(m) for m in mirror.listing(session, {bucket})]
    return [
        mirror.as_dict(m) for m in mirror.listing(session, access.visible(session, caller, at_least="admin"))
    ]


@router.get("/mirrors/{mirror_id}")
def read_mirror(
    mirror_id: uuid.UUID, caller: Caller = CALLER, session: Session = READ_SESSION
) -> dict[str, Any]:
    return mirror.as_dict(_mirror(session, caller, mirror_id))


@router.delete("/mirrors/{mirror_id}", status_code=204)
def delete_mirror(mirror_id: uuid.UUID, caller: Caller = CALLER, session: Session = DB_SESSION) -> Response:
    mirror.remove(session, _mirror(session, caller, mirror_id), actor=caller.name)
    return Response(status_code=204)


@router.post("/mirrors/{mirror_id}/run")
def run_mirror(
    mirror_id: uuid.UUID, caller: Caller = CALLER, storage: Storage = STORAGE, session: Session = DB_SESSION
) -> dict[str, Any]:
    """Run the mirror now; its report (an error in it when the run stopped part way)."""
    return mirror.run(session, storage, _mirror(session, caller, mirror_id), actor=caller.name)


@router.post("/mirrors/{mirror_id}/restore/preview")
def preview_restore(
    mirror_id: uuid.UUID,
    body: RestorePreviewIn,
    caller: Caller = CALLER,
    storage: Storage = STORAGE,
    session: Session = READ_SESSION,
) -> dict[str, Any]:
    """What a storage.restore action would do now, and the action to POST to /api/v1/actions
    to have it done."""
    found = _mirror(session, caller, mirror_id)
    params: dict[str, Any] = {"mirror_id": str(found.id), "prefix": body.prefix, "overwrite": body.overwrite}
    if body.target_bucket:
        params["target_bucket"] = body.target_bucket
    planned = restore.plan(session, storage, params)
    return {
        "action": {"kind": restore.KIND, "target": restore.TARGET, "params": params},
        "plan": planned.as_dict(),
        "steps": restore.steps(planned.as_dict()),
    }


# -- drills ----------------------------------------------------------------------------------


@router.post("/drills", status_code=201)
def run_drill(
    body: DrillIn, caller: Caller = CALLER, storage: Storage = STORAGE, session: Session = DB_SESSION
) -> dict[str, Any]:
    """Restore the mirror into a fresh bucket and compare it with the source: the drill."""
    found = _mirror(session, caller, body.mirror_id)
    done = drill.run(session, storage, found, actor=caller.name, keep=body.keep, role=caller.role)
    return drill.as_dict(done)


@router.get("/drills")
def list_drills(
    bucket: str | None = Query(None, max_length=63),
    limit: int = Query(50, ge=1, le=drill.MAX_LIST),
    caller: Caller = CALLER,
    session: Session = READ_SESSION,
) -> list[dict[str, Any]]:
    if bucket is not None:
        access.require(session, caller, bucket, "admin")
        return [drill.as_dict(d) for d in drill.listing(session, {bucket}, limit)]
    return [
        drill.as_dict(d)
        for d in drill.listing(session, access.visible(session, caller, at_least="admin"), limit)
    ]


@router.get("/drills/{drill_id}")
def read_drill(
    drill_id: uuid.UUID, caller: Caller = CALLER, session: Session = READ_SESSION
) -> dict[str, Any]:
    found = drill.get(session, drill_id)
    access.require(session, caller, found.bucket, "admin")
    return drill.as_dict(found)
