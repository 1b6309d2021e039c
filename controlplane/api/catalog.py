"""The catalog over HTTP: services and instances (with Consul-style blocking queries), an
instance's health history, registration, and Prometheus http_sd."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from controlplane.api.deps import ADMIN, OPERATOR, VIEWER, Principal
from controlplane.catalog import instances
from controlplane.clock import utcnow
from controlplane.errors import NotFound, TooLarge
from controlplane.notify import CATALOG, NOTIFIER
from controlplane.schemas.ingest import NAME_PATTERN, Text, Timestamp
from controlplane.web import DB_SESSION

router = APIRouter(tags=["catalog"])


class InstanceIn(BaseModel):
    service: str = Field(min_length=1, max_length=50, pattern=NAME_PATTERN)
    kind: Text = Field(min_length=1, max_length=30, description="redis, postgres, rabbitmq, ...")
    address: Text = Field(min_length=1, max_length=255, description="host:port (or a socket path).")
    role: Text | None = Field(None, max_length=30, description="primary, replica, ...")
    status: Literal["passing", "warning", "critical"] | None = Field(None, description="Health, if known.")
    message: Text | None = Field(None, max_length=2000)
    tags: dict[Text, Text] = Field(default_factory=dict, max_length=64)
    ttl_s: float | None = Field(None, gt=0, le=86400, description="Critical after this long with no report.")
    observed_at: Timestamp | None = Field(
        None,
        description="When the role was read (RFC 3339). A role read before the instance's last role "
        "change is stale and ignored, so a probe from just before a failover cannot undo it.",
    )


def _describe(request: Request, name: str | None) -> list[dict]:
    with request.app.state.read_sessionmaker.begin() as session:
        return instances.describe(session, name)


@router.get("/services", dependencies=[Depends(VIEWER)], summary="Every service with its instances")
def list_services(request: Request) -> list[dict[str, Any]]:
    return _describe(request, None)


@router.get("/services/{name}", dependencies=[Depends(VIEWER)], summary="One service (blocking query)")
async def read_service(
    request: Request,
    response: Response,
    name: str,
    index: int | None = Query(None, ge=0, description="Answer once the service's index moves past this."),
    wait: float = Query(30, ge=0, le=300, description="Seconds a blocking query waits at most."),
) -> dict[str, Any]:
    """With ``index`` (the ``X-Coreplane-Index`` of an earlier answer) this waits until the
    service changes or ``wait`` passes, like Consul's blocking queries: clients learn of a
    failover the moment the catalog records it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        seen = NOTIFIER.generation(CATALOG)
        found = await asyncio.to_thread(_describe, request, name)
        if not found:
            raise NotFound(f"no service {name!r} in the catalog")
        left = deadline - loop.time()
        changed = index is None or found[0]["index"] > index
        if changed or left <= 0 or request.app.state.stopping or await request.is_disconnected():
            response.headers["X-Coreplane-Index"] = str(found[0]["index"])
            return found[0]
        await NOTIFIER.wait_async(CATALOG, seen, min(left, 5.0))


@router.get(
    "/services/{name}/instances/{address}/history",
    dependencies=[Depends(VIEWER)],
    summary="An instance's health and role transitions, newest first",
)
def instance_history(
    request: Request,
    name: str,
    address: str,
    hours: float = Query(24, gt=0, le=24 * 90),
    limit: int = Query(200, ge=1, le=5000),
) -> list[dict[str, Any]]:
    with request.app.state.read_sessionmaker.begin() as session:
        since = utcnow() - timedelta(hours=hours)
        return instances.history(session, name, address, since=since, limit=limit)


# Instances per registration: one transaction, so one lock hold on SQLite (about 1.5 ms an
# instance: 3,000 held every other writer up for 4.6 s).
MAX_REGISTER = 500


@router.post("/services/register", status_code=202, summary="Register (or report on) instances")
def register_instances(
    request: Request, instances_in: list[InstanceIn], who: Principal = Depends(OPERATOR)
) -> dict[str, int]:
    if len(instances_in) > MAX_REGISTER:
        raise TooLarge(
            f"{len(instances_in)} instances in one request, over the cap of {MAX_REGISTER}: "
            f"send them in several requests of at most {MAX_REGISTER}",
            [{"kind": "body", "index": None, "field": None, "reason": f"at most {MAX_REGISTER} instances"}],
            reason="too_many_items",
        )
    hold = request.app.state.settings.control.recover_after_s
    with request.app.state.sessionmaker.begin() as session:
        for item in instances_in:
            report = instances.InstanceReport(**item.model_dump())
            instances.report(session, report, agent_id=who.agent_id, now=utcnow(), hold_s=hold)
    return {"registered": len(instances_in)}


class OwnerIn(BaseModel):
    agent: str = Field(
        min_length=1, max_length=100, description="The registered agent that owns it from now on."
    )


@router.post(
    "/services/{name}/instances/{address:path}/owner",
    summary="Reassign an instance to another agent (admin, audited)",
    description="Only the owning agent may report on an instance (heartbeat targets, health "
    "events) and only it is handed the instance's actions; this moves it, e.g. after the "
    "backend moved to another host.",
)
def reassign_owner(
    name: str,
    address: str,
    owner_in: OwnerIn,
    who: Principal = Depends(ADMIN),
    session: Session = DB_SESSION,
) -> dict[str, str]:
    instances.reassign(session, name, address, agent=owner_in.agent, actor=f"{who.kind}:{who.name}")
    return {"service": name, "address": address, "agent": owner_in.agent}


@router.get("/sd/prometheus", dependencies=[Depends(VIEWER)], summary="Prometheus http_sd target groups")
def prometheus_sd(request: Request) -> list[dict[str, Any]]:
    """One target group per instance, labelled with its service, kind, role and health,
    so relabelling can keep, say, only primaries."""
    groups = []
    for service in _describe(request, None):
        for i in service["instances"]:
            labels = {
                "coreplane_service": service["name"],
                "coreplane_kind": service["kind"],
                "coreplane_health": i["health"],
            }
            if i["role"]:
                labels["coreplane_role"] = i["role"]
            if i["agent"]:
                labels["coreplane_agent"] = i["agent"]
            groups.append({"targets": [i["address"]], "labels": labels})
    return groups
