"""Alerts from Alertmanager or Grafana, as events the policy engine can act on.

Alertmanager posts a firing alert again every ``repeat_interval`` (and every group
change); an event is stored only when an alert's status changes for its fingerprint, so
a rule fires once per firing and the events list reads as the alert's history. The
``alerts`` table holds each fingerprint's last known status. Session first, never commits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from controlplane.notify import EVENTS, announce
from controlplane.schemas.webhooks import AlertIn, AlertmanagerPayloadIn
from controlplane.store.models import AlertRecord
from controlplane.store.writes import EventRow, write_events

EVENT_TYPE = "alert"
MAX_TEXT = 2000  # characters kept of one label or annotation value in an event's details
# Alerts per write transaction, so ingest and the long poll get SQLite's write lock in
# between (measured on a loaded 2-core box: 200 alerts hold it 70 ms median, 180 ms at most).
CHUNK = 200


@dataclass(frozen=True)
class Intake:
    stored: int
    deduplicated: int


def fingerprint(alert: AlertIn) -> str:
    """The sender's fingerprint, or one of the sorted label set when it sent none."""
    if alert.fingerprint:
        return alert.fingerprint
    canonical = json.dumps(sorted(alert.labels.items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def service_of(labels: dict[str, str]) -> str:
    """The catalog service an alert is about: its ``service`` label, else ``job``."""
    return (labels.get("service") or labels.get("job") or "alertmanager")[:50]


def _short(values: dict[str, str]) -> dict[str, str]:
    return {k[:200]: v[:MAX_TEXT] for k, v in values.items()}


def _details(alert: AlertIn, fp: str, payload: AlertmanagerPayloadIn, source: str) -> dict:
    labels, annotations = _short(alert.labels), _short(alert.annotations)
    details: dict[str, Any] = {
        "fingerprint": fp,
        "alertname": labels.get("alertname", ""),
        "severity": labels.get("severity", ""),
        "summary": annotations.get("summary") or annotations.get("description", ""),
        "labels": labels,
        "annotations": annotations,
        "starts_at": alert.startsAt.isoformat() + "Z" if alert.startsAt else None,
        "ends_at": alert.endsAt.isoformat() + "Z" if alert.endsAt else None,
        "source": source,
        "receiver": payload.receiver,
        "generator_url": alert.generatorURL,
    }
    if "instance" in labels:  # the policy engine tells instances apart by details.instance
        details["instance"] = labels["instance"]
    if alert.values is not None:
        details["values"] = alert.values
    return details


def _claim(
    session: Session, pairs: list[tuple[str, AlertIn]], now: datetime
) -> tuple[dict[str, AlertRecord], set[str]]:
    """The chunk's fingerprint rows, locked, and the fingerprints this call created (with the
    status of their first alert here). One multi-row insert-or-nothing first, so two
    deliveries at once cannot both create a row; then one locking read, in fingerprint
    order, so two deliveries lock rows in the same order (no deadlock)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    first: dict[str, AlertIn] = {}
    for fp, alert in pairs:
        first.setdefault(fp, alert)
    rows = [
        {"fingerprint": fp, "alertname": alert.labels.get("alertname", ""), "status": alert.status,
         "labels": alert.labels, "annotations": alert.annotations, "starts_at": alert.startsAt,
         "ends_at": alert.endsAt, "updated_at": now}
        for fp, alert in first.items()
    ]  # fmt: skip
    # executemany, not one VALUES list: the statement compiles once and stays cached.
    created = set(
        session.scalars(
            insert(AlertRecord)
            .on_conflict_do_nothing(index_elements=["fingerprint"])
            .returning(AlertRecord.fingerprint),  # rowcount is not reliable across drivers here
            rows,
        )
    )
    records = session.scalars(
        select(AlertRecord)
        .where(AlertRecord.fingerprint.in_(first))
        .order_by(AlertRecord.fingerprint)
        .with_for_update()
    )
    return {r.fingerprint: r for r in records}, created


def _late(record: AlertRecord, alert: AlertIn) -> bool:
    """A retried firing notice of an alert already resolved: same start, so old news (a
    new firing of the same alert starts later)."""
    return (
        record.status == "resolved"
        and alert.status == "firing"
        and alert.startsAt is not None
        and alert.startsAt == record.starts_at
    )


def fingerprinted(payload: AlertmanagerPayloadIn) -> list[tuple[str, AlertIn]]:
    """The payload's alerts with their fingerprints, in fingerprint order."""
    return sorted(((fingerprint(a), a) for a in payload.alerts), key=lambda pair: pair[0])


def chunks(payload: AlertmanagerPayloadIn, size: int = CHUNK) -> Iterator[list[tuple[str, AlertIn]]]:
    """``fingerprinted(payload)``, ``size`` at a time: one write transaction each (the
    caller's), so a big delivery never holds SQLite's write lock for long. Taking them one
    chunk after another stores what one transaction would: each alert sees the records as
    the alerts before it left them. A failure part-way keeps the chunks stored before it,
    and the sender's retry finds those already known (deduplicated)."""
    pairs = fingerprinted(payload)
    for start in range(0, len(pairs), size):
        yield pairs[start : start + size]


def record_alerts(
    session: Session, payload: AlertmanagerPayloadIn, pairs: list[tuple[str, AlertIn]], *, now: datetime
) -> Intake:
    """Store an event for each alert of ``pairs`` (a chunk of ``payload``'s, in fingerprint
    order) whose status changed; wake the policy engine if any."""
    records, created = _claim(session, pairs, now)
    source = payload.source  # looks at every alert: once, not once per alert
    rows: list[EventRow] = []
    for fp, alert in pairs:
        record = records[fp]
        new = fp in created
        created.discard(fp)  # a second alert with the same fingerprint compares with the first
        if not new and _late(record, alert):
            continue  # leave the record as the newer notice left it
        if new or record.status != alert.status:
            rows.append(EventRow(EVENT_TYPE, service_of(alert.labels), now, alert.status,
                                 _details(alert, fp, payload, source)))  # fmt: skip
            record.status = alert.status
        record.starts_at = alert.startsAt or record.starts_at
        record.alertname = alert.labels.get("alertname", "")
        record.labels, record.annotations = alert.labels, alert.annotations
        record.ends_at, record.updated_at = alert.endsAt, now
    session.flush()
    write_events(session, rows)
    if rows:
        announce(session, EVENTS)
    return Intake(stored=len(rows), deduplicated=len(pairs) - len(rows))
