"""Agent endpoints. A heartbeat is stored as an uptime sample per agent."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from controlplane.api.deps import db_session
from controlplane.store.models import InfrastructureMetric

router = APIRouter(prefix="/agents", tags=["agents"])

HEARTBEAT_METRIC = "coreplane_agent_uptime_seconds"


class HeartbeatIn(BaseModel):
    agent: str = Field(min_length=1, max_length=50, description="Agent name, unique per host.")
    version: str = Field(max_length=40)
    hostname: str = Field(max_length=255)
    uptime_s: float = Field(ge=0)


@router.post("/heartbeat", status_code=202, summary="Record that an agent is alive")
def heartbeat(heartbeat_in: HeartbeatIn, session: Session = Depends(db_session)) -> dict:
    session.add(
        InfrastructureMetric(
            metric_type=HEARTBEAT_METRIC,
            timestamp=datetime.now(UTC).replace(tzinfo=None),
            service_name=heartbeat_in.agent,
            value=heartbeat_in.uptime_s,
            tags={"version": heartbeat_in.version, "hostname": heartbeat_in.hostname},
        )
    )
    return {"accepted": True}
