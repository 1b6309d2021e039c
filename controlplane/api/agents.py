"""Agent endpoints: registration (admin) and heartbeats (agents)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from controlplane.api.catalog import InstanceIn
from controlplane.api.deps import ADMIN, AGENT_OR_ADMIN, Principal
from controlplane.catalog import instances
from controlplane.clock import utcnow
from controlplane.errors import Forbidden
from controlplane.ops import agents
from controlplane.schemas.ingest import Text
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
    agent, token = agents.register_agent(
        session, agent_in.name, actor=f"{admin.kind}:{admin.name}", now=utcnow()
    )
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
    agents.record_heartbeat(
        session,
        agent=heartbeat_in.agent,
        agent_id=principal.agent_id,
        version=heartbeat_in.version,
        hostname=heartbeat_in.hostname,
        uptime_s=heartbeat_in.uptime_s,
        targets=[instances.InstanceReport(**target.model_dump()) for target in heartbeat_in.targets],
        now=utcnow(),
        hold_s=request.app.state.settings.control.recover_after_s,
    )
    return {"accepted": True}
