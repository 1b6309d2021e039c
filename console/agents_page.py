"""The agents page: every registered agent, when it was last heard from, its spool and
errors as it reports them, and the health of what it watches.

Agents already report their own figures in every batch (agents/runtime.py, Shipper):
``coreplane_agent_spool_batches`` / ``_spool_bytes`` / ``_push_errors`` under the service
``coreplane_agent``, tagged with the agent's name; and an ``agent.spool_overflow`` event
when batches were dropped. This page shows the latest of each."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.pages import _render, require_role
from controlplane.api.deps import db_session
from controlplane.catalog.instances import describe
from controlplane.clock import utcnow
from controlplane.store.models import Agent, InfrastructureEvent, InfrastructureMetric

router = APIRouter(include_in_schema=False)

AGENT_SERVICE = "coreplane_agent"  # the service agents report their own figures under (agents/runtime.py)
OWN_FIGURES = ("coreplane_agent_spool_batches", "coreplane_agent_spool_bytes", "coreplane_agent_push_errors")
FIGURES_WINDOW = timedelta(hours=1)  # older figures say nothing about the agent now
ERRORS_WINDOW = timedelta(days=1)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def _figures(session: Session, name: str, now: datetime) -> dict[str, tuple[float, datetime]]:
    """The latest value (and when) of each of the agent's own figures within the window."""
    m = InfrastructureMetric
    found = {}
    for metric in OWN_FIGURES:
        row = session.execute(
            select(m.value, m.timestamp)
            .where(m.metric_type == metric, m.service_name == AGENT_SERVICE,
                   m.timestamp >= now - FIGURES_WINDOW, m.tags["agent"].as_string() == name)
            .order_by(m.timestamp.desc())
            .limit(1)
        ).first()  # fmt: skip
        if row is not None:
            found[metric.removeprefix("coreplane_agent_")] = (row.value, row.timestamp)
    return found


def _overflows(session: Session, name: str, now: datetime) -> tuple[int, int]:
    """(spool overflow reports, batches they dropped) within the errors window."""
    e = InfrastructureEvent
    rows = session.scalars(
        select(e.details)
        .where(e.service_name == AGENT_SERVICE, e.event_type == "agent.spool_overflow",
               e.timestamp >= now - ERRORS_WINDOW, e.details["agent"].as_string() == name)
    ).all()  # fmt: skip
    return len(rows), sum(int((d or {}).get("dropped_batches") or 0) for d in rows)


def _targets(session: Session) -> dict[str, list[dict]]:
    """What each agent watches, from the catalog: agent name -> instances."""
    by_agent: dict[str, list[dict]] = {}
    for service in describe(session):
        for i in service["instances"]:
            if i["agent"]:
                by_agent.setdefault(i["agent"], []).append({"service": service["name"], **i})
    return by_agent


def context(session: Session, now: datetime, ttl_s: float) -> dict:
    targets = _targets(session)
    rows = []
    for agent in session.scalars(select(Agent).order_by(Agent.revoked, Agent.name)):
        seconds = (now - agent.last_seen_at).total_seconds() if agent.last_seen_at else None
        watched = targets.get(agent.name, [])
        health: dict[str, int] = {}
        for i in watched:
            health[i["health"]] = health.get(i["health"], 0) + 1
        overflows, dropped = _overflows(session, agent.name, now)
        rows.append({
            "agent": agent, "age": age(seconds), "silent": seconds is None or seconds > ttl_s,
            "figures": _figures(session, agent.name, now), "overflows": overflows, "dropped": dropped,
            "targets": watched, "health": health,
        })  # fmt: skip
    return {"agents": rows, "ttl_s": ttl_s}


@router.get("/agents")
def agents_page(
    request: Request, _role: str = Depends(require_role("viewer")), session: Session = Depends(db_session)
) -> Response:
    ctx = context(session, utcnow(), request.app.state.settings.control.instance_ttl_s)
    return _render(request, "agents.html", ctx, block="agents")
