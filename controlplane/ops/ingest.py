"""Ingest one agent batch: validate limits, deduplicate by batch_id, store atomically."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from controlplane.catalog import instances
from controlplane.catalog.health import SEVERITY
from controlplane.errors import Conflict, Rejected
from controlplane.notify import EVENTS, announce
from controlplane.schemas.ingest import EventIn, HealthDetails, IngestBatchIn, IngestResult
from controlplane.settings import IngestSettings, RetentionSettings
from controlplane.store import partitions
from controlplane.store.models import IngestBatch
from controlplane.store.writes import EventRow, upsert_rollups, write_events, write_points

# deadlock_detected, lock_not_available, serialization_failure
RETRYABLE = {"40P01", "55P03", "40001"}


def _err(kind: str, index: int | None, field: str | None, reason: str, code: str) -> dict:
    return {"kind": kind, "index": index, "field": field, "reason": reason, "code": code}


def check_limits(
    batch: IngestBatchIn, *, limits: IngestSettings, retention: RetentionSettings, now: datetime
) -> list[dict]:
    """Every limit the schema cannot know (they are settings); one entry per offence,
    with a ``code``: too_many_items, timestamp, tags, details."""
    total = len(batch.metrics) + len(batch.events)
    if total > limits.max_items:
        why = f"{total} items, more than the limit of {limits.max_items}: split the batch"
        return [_err("batch", None, None, why, "too_many_items")]
    errors: list[dict] = []
    latest = now + timedelta(seconds=limits.max_future_skew_s)
    oldest = {d: now - timedelta(days=d) for d in {retention.raw_days, *retention.metric_type_days.values()}}

    def check_time(kind: str, index: int, ts: datetime, keep_days: int) -> None:
        if ts > latest:
            why = f"{ts.isoformat()}Z is more than {limits.max_future_skew_s:g} s in the future"
            errors.append(_err(kind, index, "timestamp", f"{why}: check the agent's clock", "timestamp"))
        elif ts < oldest[keep_days]:
            why = f"{ts.isoformat()}Z is older than the {keep_days}-day retention"
            errors.append(_err(kind, index, "timestamp", why, "timestamp"))

    max_key, max_value = limits.max_tag_key_length, limits.max_tag_value_length
    for i, point in enumerate(batch.metrics):
        ts = point.timestamp
        keep = retention.metric_type_days.get(point.metric_type, retention.raw_days)
        if ts > latest or ts < oldest[keep]:
            check_time("metrics", i, ts, keep)
        tags = point.tags
        if not tags:
            continue
        # The common case in one pass; the loop below only runs to name the offence.
        if len(tags) <= limits.max_tags and all(
            0 < len(k) <= max_key and len(v) <= max_value and "\x00" not in k and "\x00" not in v
            for k, v in tags.items()
        ):
            continue
        if len(point.tags) > limits.max_tags:
            why = f"{len(point.tags)} tags, more than the limit of {limits.max_tags}"
            errors.append(_err("metrics", i, "tags", why, "tags"))
        for key, value in point.tags.items():
            field = f"tags.{key[:40]}"
            if not key or len(key) > limits.max_tag_key_length:
                why = f"tag keys need 1 to {limits.max_tag_key_length} characters"
                errors.append(_err("metrics", i, field, why, "tags"))
            if len(value) > limits.max_tag_value_length:
                why = f"tag value longer than {limits.max_tag_value_length} characters"
                errors.append(_err("metrics", i, field, why, "tags"))
            if "\x00" in key or "\x00" in value:
                errors.append(_err("metrics", i, field, "tags may not contain NUL bytes", "tags"))
    for i, event in enumerate(batch.events):
        check_time("events", i, event.timestamp, retention.raw_days)
        try:
            text = json.dumps(event.details, allow_nan=False)
        except ValueError:
            why = "details hold NaN or Infinity, which JSON cannot carry"
            errors.append(_err("events", i, "details", why, "details"))
            continue
        if "\\u0000" in text:
            errors.append(_err("events", i, "details", "NUL bytes cannot be stored", "details"))
        if len(text) > limits.max_details_bytes:
            why = f"details are {len(text)} bytes of JSON, over {limits.max_details_bytes}"
            errors.append(_err("events", i, "details", why, "details"))
        if event.event_type == "health":
            errors.extend(_health_errors(i, event.details))
    return errors


def _health_errors(index: int, details: dict) -> list[dict]:
    """A health event's details become catalog columns: a role that is an object, or an
    address longer than its column, is refused here, naming the field, not by the store."""
    try:
        HealthDetails.model_validate(details)
    except ValidationError as exc:
        return [
            _err("events", index, "details." + ".".join(str(p) for p in err["loc"]), err["msg"], "details")
            for err in exc.errors(include_url=False)
        ]
    return []


def _claim_batch(session: Session, batch: IngestBatchIn, agent: str, digest: str, now: datetime) -> bool:
    """Record the batch id under ``agent``; False when that agent already sent this batch
    (a duplicate), Conflict when it sent different content (``digest``) under the same id."""
    make_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        make_insert(IngestBatch)
        .values(
            batch_id=batch.batch_id,
            agent=agent,
            content_hash=digest,
            received_at=now,
            metrics=len(batch.metrics),
            events=len(batch.events),
        )
        .on_conflict_do_nothing(index_elements=["agent", "batch_id"])
        .returning(IngestBatch.batch_id)
    )
    if session.execute(stmt).first() is not None:
        return True
    stored = session.scalar(
        select(IngestBatch.content_hash).where(
            IngestBatch.agent == agent, IngestBatch.batch_id == batch.batch_id
        )
    )
    # A row from before content hashes were kept (NULL) cannot be compared: a duplicate, as then.
    if stored is not None and stored != digest:
        raise Conflict(
            f"agent {agent!r} already sent a different batch with id {batch.batch_id!r}; "
            "a batch id names one batch: send new data under a new id. Nothing was stored."
        )
    return False


def prepare_partitions(engine: Engine, batch: IngestBatchIn, attempts: int = 5) -> None:
    """Create, in their own transaction, the daily partitions the batch will write to.

    Creating a partition locks its parent exclusively; a reader that meanwhile touches
    the new partition (the policy engine, a query) can deadlock with it, and PostgreSQL
    then aborts one side: if it is us, we try again rather than fail the batch."""
    if engine.dialect.name != "postgresql":
        return
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as conn:
                partitions.ensure_partitions(
                    conn, table="infrastructure_metrics", days={p.timestamp.date() for p in batch.metrics}
                )
                partitions.ensure_partitions(
                    conn, table="infrastructure_events", days={e.timestamp.date() for e in batch.events}
                )
            return
        except OperationalError as exc:
            if attempt == attempts or getattr(exc.orig, "sqlstate", None) not in RETRYABLE:
                raise
            time.sleep(0.05 * attempt)


def _with_trace(event: EventIn, trace_id: str | None) -> dict:
    """The event's details with its trace id: its own field first, then one already in
    its details, then the request's."""
    if event.trace_id:
        return {**event.details, "trace_id": event.trace_id}
    if trace_id and "trace_id" not in event.details:
        return {**event.details, "trace_id": trace_id}
    return event.details


def _catalog_reports(batch: IngestBatchIn) -> list[tuple[int, instances.InstanceReport]]:
    """(event index, report) for each health event that reaches the catalog."""
    reports = []
    for i, e in enumerate(batch.events):
        health = HealthDetails.model_validate(e.details) if e.event_type == "health" else None
        if health is not None and e.status in SEVERITY and health.instance:
            report = instances.InstanceReport(
                service=e.service_name,
                kind=health.type or "unknown",
                address=health.instance,
                status=e.status,
                role=health.role,
                message=health.message,
                observed_at=e.timestamp,
            )
            reports.append((i, report))
    return reports


def ingest_batch(
    session: Session,
    batch: IngestBatchIn,
    *,
    limits: IngestSettings,
    retention: RetentionSettings,
    now: datetime,
    agent: str,
    content_digest: str,
    agent_id: uuid.UUID | None = None,
    hold_s: float = 10.0,
    trace_id: str | None = None,
) -> IngestResult:
    """Store the batch whole, or raise Rejected and store nothing; health events also
    reach the catalog at once (the start of a failover). Events without a trace id of
    their own get ``trace_id``, the request's. The caller commits.

    ``agent`` is who sent it (the token's agent, not the body's say): batch ids are that
    agent's own. ``content_digest`` is the SHA-256 of the batch's JSON as received (after
    gunzip): a resend from an agent's spool is byte for byte the same; another body under
    the same id is a Conflict. (Hashing the bytes costs 0.5 ms a 5,000-point batch; a
    canonical re-serialisation cost 36 ms, as much as validating it.)
    ``agent_id`` set means an agent's token: its health events may only be about
    its own instances (NotOwner, a Conflict, otherwise; the caller's rollback drops it all)."""
    errors = check_limits(batch, limits=limits, retention=retention, now=now)
    if errors:
        raise Rejected(
            f"the batch was refused: {len(errors)} problem(s), nothing stored",
            errors,
            reason=errors[0]["code"],
        )
    if not _claim_batch(session, batch, agent, content_digest, now):
        return IngestResult(batch_id=batch.batch_id, duplicate=True, metrics=0, events=0)
    reports = _catalog_reports(batch)
    # Every health event about another agent's instance, named in one 409 (after the
    # duplicate check: a replay of a batch stored before a reassignment is still a duplicate).
    instances.refuse_foreign(
        session,
        [(i, report.service, report.address) for i, report in reports],
        agent_id=agent_id,
        kind="events",
        field="details.instance",
    )
    points = batch.metrics  # already the shape the writers take
    events = [
        EventRow(e.event_type, e.service_name, e.timestamp, e.status, _with_trace(e, trace_id))
        for e in batch.events
    ]
    write_points(session, points)
    write_events(session, events)
    upsert_rollups(session, points)
    if events:
        announce(session, EVENTS)
    for _index, report in reports:
        instances.report(session, report, agent_id=agent_id, now=now, hold_s=hold_s)
    return IngestResult(batch_id=batch.batch_id, duplicate=False, metrics=len(points), events=len(events))
