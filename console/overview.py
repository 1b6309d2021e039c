"""The overview: a health matrix of every service and instance, open alerts, recent
actions, tiles with sparklines for the key figures, and the control plane's own view of
its backends. The matrix, alerts, actions and tiles are live (console/live.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from jinja2_fragments import render_block
from sqlalchemy import select
from sqlalchemy.orm import Session

from console import charts
from console.live import ws_url
from console.render import render, templates
from console.session import require_session
from controlplane import leader
from controlplane.backends import probe_all
from controlplane.catalog.instances import describe
from controlplane.clock import utcnow
from controlplane.ops.alerts import service_of
from controlplane.store.models import Action, Agent, AlertRecord, MetricRollup1m
from controlplane.web import DB_SESSION

router = APIRouter(include_in_schema=False)
LIVE_BLOCKS = ("leadership", "matrix", "alerts", "recent_actions", "tiles", "cache", "agents")


@dataclass(frozen=True)
class Tile:
    key: str
    title: str
    metric_type: str
    agg: str  # per service and bucket
    combine: str  # across services
    unit: str = ""
    scale: float = 1.0
    tags: tuple[tuple[str, str], ...] = ()
    increase: bool = False  # a counter: show what it grew by per step, not its level


# fmt: off
TILES = (
    Tile("cache-hit-ratio", "Cache hit ratio", "coreplane_cache_hit_ratio", "avg", "avg", "%", 100),
    Tile("queue-depth", "Queue depth", "coreplane_rabbitmq_messages_ready", "avg", "sum", "msgs"),
    Tile("task-failures", "Failed tasks / min", "coreplane_celery_tasks_total", "max", "sum",
         tags=(("state", "failed"),), increase=True),
    Tile("search-latency", "Search latency", "coreplane_elasticsearch_search_latency_seconds", "avg",
         "avg", "ms", 1000),
    Tile("replication-lag", "Replication lag", "coreplane_redis_replication_lag_seconds", "max", "max",
         "s"),
)
# fmt: on


def _tile(session: Session, tile: Tile, now: datetime) -> dict:
    data = charts.across(session, tile.metric_type, now=now, agg=tile.agg, combine=tile.combine,
                         tags=dict(tile.tags))  # fmt: skip
    values = data["series"][0]["values"]
    if tile.increase:
        pairs = zip([None, *values], values, strict=False)
        values = [None if a is None or b is None else max(b - a, 0.0) for a, b in pairs]
    values = [None if v is None else v * tile.scale for v in values]
    data["series"] = [{"label": tile.title, "values": values}]
    data["unit"] = tile.unit
    latest = next((v for v in reversed(values) if v is not None), None)
    return {"tile": tile, "latest": latest, "data": data}


def _open_alerts(session: Session) -> list[dict]:
    """The alerts firing now: the webhook keeps one row per fingerprint with its status."""
    firing = select(AlertRecord).where(AlertRecord.status == "firing")
    rows = session.scalars(firing.order_by(AlertRecord.starts_at.desc()).limit(50))
    return [
        {"at": a.starts_at or a.updated_at, "service": service_of(a.labels or {}), "name": a.alertname,
         "severity": (a.labels or {}).get("severity", ""),
         "summary": (a.annotations or {}).get("summary", "")}
        for a in rows
    ]  # fmt: skip


def _cache_ratios(session: Session, now: datetime) -> list[dict]:
    """The latest hit ratio per cache namespace and layer, from the agents' cache collector
    (the 1-minute roll-ups: a few rows per namespace and layer, on the type/bucket index)."""
    r = MetricRollup1m
    rows = session.execute(
        select(r.bucket, r.sum, r.count, r.tags)
        .where(r.metric_type == "coreplane_cache_hit_ratio", r.bucket >= now - timedelta(minutes=5))
        .order_by(r.bucket.desc())
        .limit(5000)
    ).all()
    latest: dict[tuple[str, str], dict] = {}
    for at, total, count, tags in rows:
        key = ((tags or {}).get("namespace", "?"), (tags or {}).get("layer", "?"))
        latest.setdefault(key, {"namespace": key[0], "layer": key[1], "hit_ratio": total / count, "at": at})
    return sorted(latest.values(), key=lambda r: (r["namespace"], r["layer"]))


def _agents(session: Session) -> list[Agent]:
    return list(session.scalars(select(Agent).where(Agent.revoked.is_(False)).order_by(Agent.name)))


def _recent_actions(session: Session) -> list[Action]:
    return list(
        session.scalars(
            select(Action).where(Action.parent_id.is_(None)).order_by(Action.created_at.desc()).limit(8)
        )
    )


def _matrix(session: Session) -> list[dict]:
    services = describe(session)
    for service in services:
        counts: dict[str, int] = {}
        for i in service["instances"]:
            counts[i["health"]] = counts.get(i["health"], 0) + 1
        service["worst"] = next((h for h in ("critical", "warning", "passing") if counts.get(h)), "unknown")
        service["counts"] = counts
    return services


def _leadership(session: Session, app: Any) -> dict:
    """Whether this process leads (evaluates rules, dispatches actions), and who does if not."""
    leads = app.state.control.leadership.is_leader
    return {"leads": leads, "lease": None if leads else leader.current(session)}


def context(session: Session, now: datetime, app: Any) -> dict:
    """Everything the live blocks show, read in one transaction."""
    return {
        "leadership": _leadership(session, app),
        "services": _matrix(session),
        "alerts": _open_alerts(session),
        "actions": _recent_actions(session),
        "tiles": [_tile(session, tile, now) for tile in TILES],
        "cache": _cache_ratios(session, now),
        "agents": _agents(session),
    }


def live_blocks(app: Any, params: dict[str, str], role: str) -> dict[str, str]:
    with app.state.sessionmaker.begin() as session:
        ctx = context(session, utcnow(), app) | {"role": role}
    return {name: render_block(templates.env, "overview.html", name, ctx) for name in LIVE_BLOCKS}


@router.get("/")
async def overview(
    request: Request, role: str = Depends(require_session), session: Session = DB_SESSION
) -> Response:
    backends = await probe_all(request.app.state.settings, request.app.state.engine)
    if request.headers.get("HX-Request") == "true":
        return render(request, "overview.html", {"backends": backends}, block="backends")
    # Off the event loop: a query waiting on the store must not stall every other request.
    ctx = await asyncio.to_thread(context, session, utcnow(), request.app)
    return render(request, "overview.html", ctx | {"backends": backends, "live": ws_url("overview")})
