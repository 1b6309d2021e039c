"""Catalog records: services and instances as agents report them, every health and role
transition stored as an event (the instance's history). Functions take the session
first and never commit (the caller owns the transaction)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.catalog.health import HealthState, transition
from controlplane.errors import Conflict, NotFound, Rejected
from controlplane.notify import CATALOG, EVENTS, announce
from controlplane.store.models import Agent, CatalogInstance, CatalogService, InfrastructureEvent

HEALTH_EVENT, ROLE_EVENT, CONFLICT_EVENT = "catalog.health", "catalog.role", "catalog.conflict"
CONFLICT_EVERY = timedelta(seconds=30)


class NotOwner(Conflict):
    """An agent reported on an instance another agent owns. A conflict with the catalog
    (409), not a credential problem (403): the agent's spool retries a 403 for ever, while
    this refusal stands until an admin reassigns the instance. ``errors`` names every
    refused item (code ``not_owner``), so the agent can drop just those and send the rest."""

    def __init__(self, message: str, errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


@dataclass
class InstanceReport:
    """What an agent (or an operator) says about one instance."""

    service: str
    kind: str
    address: str
    status: str | None = None  # passing | warning | critical; None = registration only
    role: str | None = None
    message: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    ttl_s: float | None = None
    observed_at: datetime | None = None  # when the role was read; None = now


def _service(session: Session, name: str, kind: str, now: datetime) -> CatalogService:
    found = select(CatalogService).where(CatalogService.name == name)
    row = session.scalars(found).first()
    if row is None:
        try:
            with session.begin_nested():  # two first reports at once: one creates, the other reads it
                row = CatalogService(name=name, kind=kind, tags={}, created_at=now, version=1)
                session.add(row)
        except IntegrityError:
            row = session.scalars(found).one()
    return row


def bump(session: Session, service: CatalogService) -> None:
    """A change to ``service``: blocking queries on it return."""
    session.execute(
        update(CatalogService)
        .where(CatalogService.id == service.id)
        .values(version=CatalogService.version + 1)
    )
    announce(session, CATALOG)


def _event(
    session: Session, event_type: str, service: str, status: str | None, now: datetime, **details: Any
) -> None:
    session.add(
        InfrastructureEvent(
            event_type=event_type, timestamp=now, service_name=service, status=status, details=details
        )
    )
    announce(session, EVENTS)


def report(
    session: Session, report_in: InstanceReport, *, agent_id: uuid.UUID | None, now: datetime, hold_s: float
) -> CatalogInstance:
    """Upsert the instance, run its health state machine, store any transition."""
    service = _service(session, report_in.service, report_in.kind, now)
    instance = session.scalars(
        select(CatalogInstance).where(
            CatalogInstance.service_id == service.id, CatalogInstance.address == report_in.address
        )
    ).first()
    changed = False
    if instance is not None:
        _check_owner(session, service, instance, agent_id)
    else:
        instance = CatalogInstance(
            service_id=service.id,
            address=report_in.address,
            role=report_in.role,
            health="unknown",
            tags=report_in.tags,
            agent_id=agent_id,
            ttl_s=report_in.ttl_s or 30.0,
        )
        session.add(instance)
        changed = True
    instance.last_seen_at = now
    if agent_id is not None and instance.agent_id is None:
        # Registered by an operator (or its agent was deleted): the first agent to report claims it.
        instance.agent_id, changed = agent_id, True
    if report_in.tags and report_in.tags != instance.tags:
        instance.tags, changed = report_in.tags, True
    if report_in.ttl_s:
        instance.ttl_s = report_in.ttl_s
    if (
        report_in.role
        and report_in.role != instance.role
        and not _stale(session, service, instance, report_in)
    ):
        primary = _other_primary(session, service, instance) if report_in.role == "primary" else None
        if primary is not None:
            # A primary that comes back after a failover: the catalog keeps the one it promoted
            # and says so (at most every CONFLICT_EVERY); the shipped rule `redis-rejoin` repoints it.
            _conflict(session, service, instance, primary, now)
        else:
            set_role(session, instance, report_in.role, now=now, reason="reported by the agent")
    if report_in.status is not None:
        changed |= _apply(session, service, instance, report_in.status, report_in.message, now, hold_s)
    if changed:
        bump(session, service)
    return instance


def _check_owner(
    session: Session, service: CatalogService, instance: CatalogInstance, agent_id: uuid.UUID | None
) -> None:
    """An agent speaks only for its own instances (people, with no agent id, for any)."""
    if agent_id is None or instance.agent_id is None or instance.agent_id == agent_id:
        return
    owner = session.get_one(Agent, instance.agent_id)
    raise _not_owner([(None, service.name, instance.address, owner.name)], kind=None, field="address")


def refuse_foreign(
    session: Session,
    reported: list[tuple[int, str, str]],
    *,
    agent_id: uuid.UUID | None,
    kind: str,
    field: str,
) -> None:
    """Raise NotOwner naming every ``(index, service, address)`` of ``reported`` that another
    agent owns, so the agent learns them all from one answer (report() alone stops at the
    first). People (no agent id) may report on any instance."""
    if agent_id is None or not reported:
        return
    rows = session.execute(
        select(CatalogService.name, CatalogInstance.address, Agent.name)
        .join(CatalogService, CatalogInstance.service_id == CatalogService.id)
        .join(Agent, CatalogInstance.agent_id == Agent.id)
        .where(
            CatalogService.name.in_(sorted({service for _i, service, _a in reported})),
            CatalogInstance.address.in_(sorted({address for _i, _s, address in reported})),
            CatalogInstance.agent_id != agent_id,
        )
    ).all()
    owners = {(service, address): owner for service, address, owner in rows}
    refused = [
        (index, service, address, owners[service, address])
        for index, service, address in reported
        if (service, address) in owners
    ]
    if refused:
        raise _not_owner(refused, kind=kind, field=field)


def _not_owner(
    refused: Sequence[tuple[int | None, str, str, str]], *, kind: str | None, field: str
) -> NotOwner:
    """The 409: a detail for people, one ``not_owner`` item per refused report for the agent."""
    errors = [
        {"kind": kind, "index": index, "field": field, "code": "not_owner",
         "reason": f"instance {address} of {service!r} is owned by agent {owner!r}"}
        for index, service, address, owner in refused
    ]  # fmt: skip
    _index, service, address, owner = refused[0]
    more = f" (and {len(refused) - 1} more, listed in errors)" if len(refused) > 1 else ""
    return NotOwner(
        f"instance {address} of {service!r} belongs to agent {owner!r}{more}; another agent may "
        f"not report on it. If it moved, an admin reassigns it with POST /api/v1/services/{service}"
        f'/instances/{address}/owner {{"agent": "<name>"}}; otherwise remove it from this '
        "agent's targets. Nothing of this request was stored.",
        errors,
    )


def reassign(session: Session, service_name: str, address: str, *, agent: str, actor: str) -> CatalogInstance:
    """Hand an instance to another agent (an admin's decision, audited): from now on only
    that agent may report on it, and its actions go to that agent."""
    instance = session.scalars(
        select(CatalogInstance)
        .join(CatalogService, CatalogInstance.service_id == CatalogService.id)
        .where(CatalogService.name == service_name, CatalogInstance.address == address)
    ).first()
    if instance is None:
        raise NotFound(f"no instance {address!r} of service {service_name!r} in the catalog")
    new = session.scalars(select(Agent).where(Agent.name == agent, Agent.revoked.is_(False))).first()
    if new is None:
        raise Rejected.field(f"no registered agent named {agent!r}", "agent", "unknown agent", kind="body")
    old = session.get(Agent, instance.agent_id) if instance.agent_id else None
    if instance.agent_id != new.id:
        instance.agent_id = new.id
        bump(session, session.get_one(CatalogService, instance.service_id))
    audit.record(
        session, actor=actor, action="catalog.reassign", target=f"{service_name} {address}",
        details={"from": old.name if old else None, "to": new.name},
    )  # fmt: skip
    return instance


def _stale(
    session: Session, service: CatalogService, instance: CatalogInstance, report_in: InstanceReport
) -> bool:
    """Whether the reported role was read before the instance's last role change: a probe
    that ran just before a promotion reaches the catalog after it, and must not undo it."""
    if report_in.observed_at is None:
        return False
    changed = session.scalar(
        select(func.max(InfrastructureEvent.timestamp)).where(
            InfrastructureEvent.event_type == ROLE_EVENT,
            InfrastructureEvent.service_name == service.name,
            InfrastructureEvent.details["instance"].as_string() == instance.address,
        )
    )
    return changed is not None and report_in.observed_at < changed


def _conflict(
    session: Session,
    service: CatalogService,
    instance: CatalogInstance,
    primary: CatalogInstance,
    now: datetime,
) -> None:
    recent = session.scalar(
        select(func.count())
        .select_from(InfrastructureEvent)
        .where(
            InfrastructureEvent.event_type == CONFLICT_EVENT,
            InfrastructureEvent.service_name == service.name,
            InfrastructureEvent.timestamp >= now - CONFLICT_EVERY,
            InfrastructureEvent.details["instance"].as_string() == instance.address,
        )
    )
    if recent:
        return
    host, _, port = primary.address.rpartition(":")
    message = f"{instance.address} says it is a primary; the catalog's primary is {primary.address}"
    _event(session, CONFLICT_EVENT, service.name, "warning", now, instance=instance.address,
           primary=primary.address, primary_host=host, primary_port=int(port), message=message)  # fmt: skip


def _other_primary(
    session: Session, service: CatalogService, instance: CatalogInstance
) -> CatalogInstance | None:
    return session.scalars(
        select(CatalogInstance).where(
            CatalogInstance.service_id == service.id,
            CatalogInstance.role == "primary",
            CatalogInstance.id != instance.id,
            CatalogInstance.health != "critical",
        )
    ).first()


def _apply(
    session: Session,
    service: CatalogService,
    instance: CatalogInstance,
    reported: str,
    message: str | None,
    now: datetime,
    hold_s: float,
) -> bool:
    before = HealthState(instance.health, instance.pending_health, instance.pending_since)
    after = transition(before, reported, now, hold_s)
    instance.pending_health, instance.pending_since = after.pending, after.pending_since
    if after.state == before.state:
        if after.state == reported and message:
            instance.health_message = message
        return False
    instance.health, instance.health_since = after.state, now
    instance.health_message = message
    _event(
        session,
        HEALTH_EVENT,
        service.name,
        after.state,
        now,
        instance=instance.address,
        role=instance.role,
        previous=before.state,
        message=message,
        kind=service.kind,
    )
    return True


def promote_held(session: Session, *, now: datetime, hold_s: float) -> int:
    """Better states that have now held for ``hold_s`` become the instance's health."""
    rows = session.execute(
        select(CatalogInstance, CatalogService)
        .join(CatalogService, CatalogInstance.service_id == CatalogService.id)
        .where(CatalogInstance.pending_health.is_not(None))
    ).all()
    moved = 0
    for instance, service in rows:
        pending = instance.pending_health
        assert pending is not None  # the query's condition
        if _apply(session, service, instance, pending, instance.health_message, now, hold_s):
            bump(session, service)
            moved += 1
    return moved


def expire_silent(session: Session, *, now: datetime) -> int:
    """Instances nobody reported on within their TTL turn critical."""
    rows = session.execute(
        select(CatalogInstance, CatalogService, Agent.name)
        .join(CatalogService, CatalogInstance.service_id == CatalogService.id)
        .outerjoin(Agent, CatalogInstance.agent_id == Agent.id)
        .where(CatalogInstance.health != "critical", CatalogInstance.last_seen_at.is_not(None))
    ).all()
    expired = 0
    for instance, service, agent in rows:
        assert instance.last_seen_at is not None  # the query's condition
        silent = (now - instance.last_seen_at).total_seconds()
        if silent < instance.ttl_s:
            continue
        who = f"agent {agent!r}" if agent else "its reporter"
        message = f"no report for {silent:.0f} s (TTL {instance.ttl_s:g} s): {who} is silent"
        _apply(session, service, instance, "critical", message, now, 0)
        bump(session, service)
        expired += 1
    return expired


def set_role(session: Session, instance: CatalogInstance, role: str, *, now: datetime, reason: str) -> None:
    if instance.role == role:
        return
    service = session.get_one(CatalogService, instance.service_id)
    _event(
        session,
        ROLE_EVENT,
        service.name,
        None,
        now,
        instance=instance.address,
        role=role,
        previous=instance.role,
        reason=reason,
    )
    instance.role = role
    bump(session, service)


def instances_of(session: Session, service_name: str) -> list[CatalogInstance]:
    return list(
        session.scalars(
            select(CatalogInstance)
            .join(CatalogService, CatalogInstance.service_id == CatalogService.id)
            .where(CatalogService.name == service_name)
            .order_by(CatalogInstance.address)
        )
    )


def describe(session: Session, service_name: str | None = None) -> list[dict]:
    """Services with their instances, as the API serves them. Plain rows, not ORM objects:
    the console's overview and blocking queries read this for every service, often."""
    s_, i_ = CatalogService, CatalogInstance
    query = select(s_.id, s_.name, s_.kind, s_.tags, s_.version).order_by(s_.name)
    if service_name is not None:
        query = query.where(s_.name == service_name)
    services = session.execute(query).all()
    if not services:
        return []
    by_service: dict[uuid.UUID, list[dict]] = {s.id: [] for s in services}
    for i in session.execute(
        select(i_.service_id, i_.address, i_.role, i_.health, i_.health_message, i_.health_since,
               i_.pending_health, i_.tags, Agent.name.label("agent"), i_.last_seen_at, i_.ttl_s)
        .outerjoin(Agent, i_.agent_id == Agent.id)
        .where(i_.service_id.in_(by_service))
        .order_by(i_.address)
    ):  # fmt: skip
        by_service[i.service_id].append(
            {"address": i.address, "role": i.role, "health": i.health, "health_message": i.health_message,
             "health_since": i.health_since, "pending_health": i.pending_health, "tags": i.tags or {},
             "agent": i.agent, "last_seen_at": i.last_seen_at, "ttl_s": i.ttl_s}
        )  # fmt: skip
    return [
        {
            "name": s.name,
            "kind": s.kind,
            "tags": s.tags or {},
            "index": s.version,
            "instances": by_service[s.id],
        }
        for s in services
    ]


def history(session: Session, service_name: str, address: str, *, since: datetime, limit: int) -> list[dict]:
    """An instance's health and role transitions, newest first."""
    rows = session.scalars(
        select(InfrastructureEvent)
        .where(
            InfrastructureEvent.service_name == service_name,
            InfrastructureEvent.event_type.in_((HEALTH_EVENT, ROLE_EVENT)),
            InfrastructureEvent.timestamp >= since,
            InfrastructureEvent.details["instance"].as_string() == address,
        )
        .order_by(InfrastructureEvent.timestamp.desc())
        .limit(limit)
    )
    return [
        {"at": e.timestamp, "event_type": e.event_type, "status": e.status, "details": e.details}
        for e in rows
    ]
