"""Agents: registering one (admin) and recording its heartbeat. Session first, never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.auth import digest, new_token
from controlplane.catalog import instances
from controlplane.errors import Conflict
from controlplane.store.models import Agent, InfrastructureMetric
from controlplane.telemetry import HEARTBEAT_METRIC


def register_agent(session: Session, name: str, *, actor: str, now: datetime) -> tuple[Agent, str]:
    """A new agent and its token (shown once: only the digest is stored), audited."""
    if session.scalars(select(Agent).where(Agent.name == name)).first() is not None:
        raise Conflict(f"an agent named {name!r} is registered already: pick another name")
    token = new_token()
    agent = Agent(name=name, token_digest=digest(token), registered_at=now)
    session.add(agent)
    session.flush()
    audit.record(session, actor=actor, action="agent.register", target=agent.name)
    return agent, token


def record_heartbeat(
    session: Session,
    *,
    agent: str,
    agent_id: uuid.UUID | None,
    version: str,
    hostname: str,
    uptime_s: float,
    targets: Sequence[instances.InstanceReport],
    now: datetime,
    hold_s: float,
) -> None:
    """An agent is alive: its uptime as a metric, its last-seen time, and what it watches
    reported to the catalog. Refused whole (NotOwner, naming each target) when a target
    belongs to another agent; ``agent_id`` None is the admin token, which may speak for any."""
    # Every target another agent owns, named in one 409 (the agent drops those and resends).
    instances.refuse_foreign(
        session,
        [(i, target.service, target.address) for i, target in enumerate(targets)],
        agent_id=agent_id,
        kind="targets",
        field="address",
    )
    session.add(
        InfrastructureMetric(
            metric_type=HEARTBEAT_METRIC,
            timestamp=now,
            service_name=agent,
            value=uptime_s,
            tags={"version": version, "hostname": hostname},
        )
    )
    if agent_id is not None:
        session.execute(
            update(Agent)
            .where(Agent.id == agent_id)
            .values(last_seen_at=now, version=version, hostname=hostname)
        )
    for target in targets:
        instances.report(session, target, agent_id=agent_id, now=now, hold_s=hold_s)
