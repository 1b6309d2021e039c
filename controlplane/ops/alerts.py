"""Alerts from Alertmanager or Grafana, as events the policy engine can act on.

Alertmanager posts a firing alert again every ``repeat_interval`` (and every group
change); an event is stored only when an alert's status changes for its fingerprint, so
a rule fires once per firing and the events list reads as the alert's history. The
``alerts`` table holds each fingerprint's last known status. Session first, never commits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

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


def _details(alert: AlertIn, fp: str, payload: AlertmanagerPayloadIn) -> dict:
    labels, annotations = _short(alert.labels), _short(alert.annotations)
    details = {
        "fingerprint": fp,
        "alertname": labels.get("alertname", ""),
        "severity": labels.get("severity", ""),
        "summary": annotations.get("summary") or annotations.get("description", ""),
        "labels": labels,
        "annotations": annotations,
        "starts_at": alert.startsAt.isoformat() + "Z" if alert.startsAt else None,
        "ends_at": alert.endsAt.isoformat() + "Z" if alert.endsAt else None,
        "source": payload.source,
        "receiver": payload.receiver,
        "generator_url": alert.generatorURL,
    }
    if "instance" in labels:  # the policy engine tells instances apart by details.instance
        details["instance"] = labels["instance"]
    if alert.values is not None:
        details["values"] = alert.values
    return details


def _claim(session: Session, fp: str, alert: AlertIn, now: datetime) -> tuple[AlertRecord, bool]:
    """The fingerprint's row, locked, and whether this call created it (with ``alert``'s
    status). Insert-or-nothing first, so two deliveries at once cannot both create it."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    inserted = session.execute(
        insert(AlertRecord)
        .values(
            fingerprint=fp, alertname=alert.labels.get("alertname", "")[:200], status=alert.status,
            labels=alert.labels, annotations=alert.annotations, starts_at=alert.startsAt,
            ends_at=alert.endsAt, updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["fingerprint"])
        .returning(AlertRecord.fingerprint)  # rowcount is not reliable across drivers here
    ).first()  # fmt: skip
    record = session.scalars(select(AlertRecord).where(AlertRecord.fingerprint == fp).with_for_update()).one()
    return record, inserted is not None


def _late(record: AlertRecord, alert: AlertIn) -> bool:
    """A retried firing notice of an alert already resolved: same start, so old news (a
    new firing of the same alert starts later)."""
    return (
        record.status == "resolved"
        and alert.status == "firing"
        and alert.startsAt is not None
        and alert.startsAt == record.starts_at
    )


def record_alerts(session: Session, payload: AlertmanagerPayloadIn, *, now: datetime) -> Intake:
    """Store an event for each alert whose status changed; wake the policy engine if any."""
    rows: list[EventRow] = []
    # In fingerprint order, so two deliveries at once lock rows in the same order (no deadlock).
    for fp, alert in sorted(((fingerprint(a), a) for a in payload.alerts), key=lambda pair: pair[0]):
        record, created = _claim(session, fp, alert, now)
        if not created and _late(record, alert):
            continue  # leave the record as the newer notice left it
        if created or record.status != alert.status:
            rows.append(EventRow(EVENT_TYPE, service_of(alert.labels), now, alert.status,
                                 _details(alert, fp, payload)))  # fmt: skip
            record.status = alert.status
        record.starts_at = alert.startsAt or record.starts_at
        record.alertname = alert.labels.get("alertname", "")[:200]
        record.labels, record.annotations = alert.labels, alert.annotations
        record.ends_at, record.updated_at = alert.endsAt, now
    session.flush()
    write_events(session, rows)
    if rows:
        announce(session, EVENTS)
    return Intake(stored=len(rows), deduplicated=len(payload.alerts) - len(rows))
