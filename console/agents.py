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
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from console.render import render
from console.session import require_role
from controlplane.catalog.instances import describe
from controlplane.clock import utcnow
from controlplane.store.models import Agent, InfrastructureEvent, InfrastructureMetric
from controlplane.web import DB_SESSION

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


def _figures(session: Session, now: datetime) -> dict[str, dict[str, tuple[float, datetime]]]:
    """Agent name -> the latest value (and when) of each of its own figures within the
    window: one query for every agent, not one per agent and figure."""
    m = InfrastructureMetric
    agent = m.tags["agent"].as_string()
    newest = func.row_number().over(partition_by=(m.metric_type, agent), order_by=m.timestamp.desc())
    latest = (
        select(m.metric_type, agent.label("agent"), m.value, m.timestamp, newest.label("n"))
        .where(m.metric_type.in_(OWN_FIGURES), m.service_name == AGENT_SERVICE,
               m.timestamp >= now - FIGURES_WINDOW)
        .subquery()
    )  # fmt: skip
    found: dict[str, dict[str, tuple[float, datetime]]] = {}
    for row in session.execute(select(latest).where(latest.c.n == 1)):
        figure = row.metric_type.removeprefix("coreplane_agent_")
        found.setdefault(row.agent, {})[figure] = (row.value, row.timestamp)
    return found


def _overflows(session: Session, now: datetime) -> dict[str, tuple[int, int]]:
    """Agent name -> (spool overflow reports, batches they dropped) within the errors window."""
    e = InfrastructureEvent
    found: dict[str, tuple[int, int]] = {}
    for details in session.scalars(
        select(e.details).where(e.service_name == AGENT_SERVICE, e.event_type == "agent.spool_overflow",
                                e.timestamp >= now - ERRORS_WINDOW)
    ):  # fmt: skip
        name, dropped = str((details or {}).get("agent")), int((details or {}).get("dropped_batches") or 0)
        reports, total = found.get(name, (0, 0))
        found[name] = (reports + 1, total + dropped)
    return found


def _targets(session: Session) -> dict[str, list[dict]]:
    """What each agent watches, from the catalog: agent name -> instances."""
    by_agent: dict[str, list[dict]] = {}
    for service in describe(session):
        for i in service["instances"]:
            if i["agent"]:
                by_agent.setdefault(i["agent"], []).append({"service": service["name"], **i})
    return by_agent


def context(session: Session, now: datetime, ttl_s: float) -> dict:
    targets, figures, overflows = _targets(session), _figures(session, now), _overflows(session, now)
    rows = []
    for agent in session.scalars(select(Agent).order_by(Agent.revoked, Agent.name)):
        seconds = (now - agent.last_seen_at).total_seconds() if agent.last_seen_at else None
        watched = targets.get(agent.name, [])
        health: dict[str, int] = {}
        for i in watched:
            health[i["health"]] = health.get(i["health"], 0) + 1
        reports, dropped = overflows.get(agent.name, (0, 0))
        rows.append({
            "agent": agent, "age": age(seconds), "silent": seconds is None or seconds > ttl_s,
            "figures": figures.get(agent.name, {}), "overflows": reports, "dropped": dropped,
            "targets": watched, "health": health,
        })  # fmt: skip
    return {"agents": rows, "ttl_s": ttl_s}


@router.get("/agents")
def agents_page(
    request: Request, _role: str = Depends(require_role("viewer")), session: Session = DB_SESSION
) -> Response:
    ctx = context(session, utcnow(), request.app.state.settings.control.instance_ttl_s)
    return render(request, "agents.html", ctx, block="agents")
