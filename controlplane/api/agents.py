"""Agent endpoints: registration (admin) and heartbeats (agents)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.api.catalog import InstanceIn
from controlplane.api.deps import ADMIN, AGENT_OR_ADMIN, Principal
from controlplane.auth import digest, new_token
from controlplane.catalog import instances
from controlplane.clock import utcnow
from controlplane.errors import Conflict, Forbidden
from controlplane.schemas.ingest import Text
from controlplane.store.models import Agent, InfrastructureMetric
from controlplane.telemetry import HEARTBEAT_METRIC
from controlplane.web import DB_SESSION

router = APIRouter(prefix="/agents", tags=["agents"])


class AgentRegisterIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._\-]+$")


class AgentRegistered(BaseModel):
    id: uuid.UUID
    name: str
    token: str = Field(description="Shown once; only its digest is stored.")


@router.post(
    "/register",
    status_code=201,
    response_model=AgentRegistered,
    summary="Issue an agent id and token",
)
def register(
    agent_in: AgentRegisterIn,
    admin: Principal = Depends(ADMIN),
    session: Session = DB_SESSION,
) -> AgentRegistered:
    if session.scalars(select(Agent).where(Agent.name == agent_in.name)).first() is not None:
        raise Conflict(f"an agent named {agent_in.name!r} is registered already: pick another name")
    token = new_token()
    agent = Agent(name=agent_in.name, token_digest=digest(token), registered_at=utcnow())
    session.add(agent)
    session.flush()
    audit.record(session, actor=f"{admin.kind}:{admin.name}", action="agent.register", target=agent.name)
    return AgentRegistered(id=agent.id, name=agent.name, token=token)


class HeartbeatIn(BaseModel):
    agent: Text = Field(min_length=1, max_length=50, description="Agent name, unique per host.")
    version: Text = Field(max_length=40)
    hostname: Text = Field(max_length=255)
    uptime_s: float = Field(ge=0, allow_inf_nan=False)
    targets: list[InstanceIn] = Field(
        default_factory=list,
        max_length=1000,
        description="What the agent watches, with each target's current health and observed role: "
        "the catalog registers and refreshes these instances.",
    )


@router.post(
    "/heartbeat",
    status_code=202,
    summary="Record that an agent is alive",
    description="An agent token speaks only for itself (403 when `agent` names another) and "
    "reports only on instances it owns or that have no owner yet (409 otherwise, nothing of the "
    "heartbeat stored, with one `not_owner` item in `errors` per refused target: its index and "
    "owner). The admin token may speak for any agent.",
)
def heartbeat(
    request: Request,
    heartbeat_in: HeartbeatIn,
    principal: Principal = Depends(AGENT_OR_ADMIN),
    session: Session = DB_SESSION,
) -> dict:
    if principal.kind == "agent" and heartbeat_in.agent != principal.name:
        raise Forbidden(
            f"this token belongs to agent {principal.name!r}, the heartbeat says {heartbeat_in.agent!r}"
        )
    # Every target another agent owns, named in one 409 (the agent drops those and resends).
    instances.refuse_foreign(
        session,
        [(i, target.service, target.address) for i, target in enumerate(heartbeat_in.targets)],
        agent_id=principal.agent_id,
        kind="targets",
        field="address",
    )
    now = utcnow()
    session.add(
        InfrastructureMetric(
            metric_type=HEARTBEAT_METRIC,
            timestamp=now,
            service_name=heartbeat_in.agent,
            value=heartbeat_in.uptime_s,
            tags={"version": heartbeat_in.version, "hostname": heartbeat_in.hostname},
        )
    )
    if principal.agent_id is not None:
        session.execute(
            update(Agent)
            .where(Agent.id == principal.agent_id)
            .values(last_seen_at=now, version=heartbeat_in.version, hostname=heartbeat_in.hostname)
        )
    hold = request.app.state.settings.control.recover_after_s
    for target in heartbeat_in.targets:
        instances.report(
            session,
            instances.InstanceReport(**target.model_dump()),
            agent_id=principal.agent_id,
            now=now,
            hold_s=hold,
        )
    return {"accepted": True}
