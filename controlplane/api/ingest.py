"""POST /api/v1/ingest: an agent's batch of metric points and events."""

from __future__ import annotations

import hashlib
import time
import zlib

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from controlplane import telemetry, tracing
from controlplane.api.deps import AGENT_OR_ADMIN, Principal, read_body
from controlplane.catalog.instances import NotOwner
from controlplane.clock import utcnow
from controlplane.errors import Conflict, Forbidden, Rejected, TooLarge, Unreadable, Unsupported
from controlplane.ops.ingest import ingest_batch, prepare_partitions
from controlplane.schemas.ingest import IngestBatchIn, IngestResult

router = APIRouter(tags=["ingest"])

_BATCH_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestBatchIn"}}},
    }
}


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, gunzipped when sent so; 413 past ``limit`` bytes either way."""
    body = await read_body(request, limit)
    telemetry.INGEST_BYTES.inc(len(body))
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise Unreadable(f"the body is not valid gzip: {exc}") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise TooLarge(f"the body inflates past the {limit}-byte limit")
        if not inflater.eof:
            raise Unreadable("the gzip body is truncated")
        # The inflater stops at the end of the first gzip member: anything after it (a
        # second member, junk) would otherwise be dropped without a word.
        if inflater.unused_data:
            raise Unreadable(
                f"{len(inflater.unused_data)} bytes follow the end of the gzip data: send one gzip member"
            )
    elif encoding != "identity":
        raise Unsupported(f"Content-Encoding {encoding!r} is not supported: send gzip or none")
    return body


def _item_errors(exc: ValidationError) -> list[dict]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if len(loc) >= 2 and loc[0] in ("metrics", "events") and isinstance(loc[1], int):
            kind, index, field = loc[0], loc[1], ".".join(str(p) for p in loc[2:]) or None
        else:
            kind, index, field = "batch", None, ".".join(str(p) for p in loc) or None
        errors.append({"kind": kind, "index": index, "field": field, "reason": err["msg"]})
    return errors


@router.post(
    "/ingest",
    status_code=202,
    response_model=IngestResult,
    summary="Store an agent's batch of metric points and events",
    description="Atomic: one bad item refuses the whole batch (422, with a list of items "
    "and reasons) and nothing is stored. The same batch_id twice stores nothing new. "
    "The body may be gzip-compressed (Content-Encoding: gzip).",
    openapi_extra=_BATCH_SCHEMA,
    responses={
        400: {"description": "Body is not valid gzip"},
        413: {"description": "Body over the size limit"},
        422: {"description": "Some items are invalid; none was stored"},
    },
)
async def ingest(request: Request, principal: Principal = Depends(AGENT_OR_ADMIN)) -> IngestResult:
    started = time.perf_counter()
    settings = request.app.state.settings
    try:
        body = await _read_body(request, settings.ingest.max_body_bytes)
        try:
            batch = IngestBatchIn.model_validate_json(body)
        except ValidationError as exc:
            errors = _item_errors(exc)
            raise Rejected(
                f"the batch was refused: {len(errors)} problem(s), nothing stored", errors
            ) from None
        if principal.kind == "agent" and batch.agent != principal.name:
            raise Forbidden(f"this token belongs to agent {principal.name!r}, the batch says {batch.agent!r}")
        digest = hashlib.sha256(body).hexdigest()
        result = await run_in_threadpool(_store, request, batch, digest, principal)
    except Rejected as exc:
        telemetry.INGEST_BATCHES.labels("rejected").inc()
        telemetry.INGEST_REJECTS.labels(exc.reason).inc()
        raise
    except Forbidden:  # another agent's name in the batch: refused as invalid input
        telemetry.INGEST_BATCHES.labels("rejected").inc()
        telemetry.INGEST_REJECTS.labels("invalid").inc()
        raise
    except Conflict as exc:  # a reused batch id, or a health event about another agent's instance
        telemetry.INGEST_BATCHES.labels("rejected").inc()
        telemetry.INGEST_REJECTS.labels("not_owner" if isinstance(exc, NotOwner) else "batch_id").inc()
        raise
    telemetry.INGEST_BATCHES.labels("duplicate" if result.duplicate else "accepted").inc()
    if result.duplicate:
        telemetry.INGEST_DUPLICATES.inc()
    telemetry.INGEST_POINTS.labels("metric").inc(result.metrics)
    telemetry.INGEST_POINTS.labels("event").inc(result.events)
    telemetry.INGEST_SECONDS.observe(time.perf_counter() - started)
    return result


def _store(request: Request, batch: IngestBatchIn, digest: str, principal: Principal) -> IngestResult:
    settings = request.app.state.settings
    # An agent's batch ids are its own; the admin token (replaying a dead-lettered batch,
    # say) sends in the name of the body's agent, so a replay dedups against the original.
    agent = principal.name if principal.kind == "agent" else batch.agent
    now = utcnow()
    prepare_partitions(request.app.state.engine, batch)
    with request.app.state.sessionmaker.begin() as session:
        return ingest_batch(
            session, batch, limits=settings.ingest, retention=settings.retention, now=now,
            agent=agent, content_digest=digest, agent_id=principal.agent_id,
            hold_s=settings.control.recover_after_s,
            trace_id=tracing.current_trace_id(),
        )  # fmt: skip
