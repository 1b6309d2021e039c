"""The catalog in the console: every service and its instances (live), and one instance's
page: its facts, its health history as a timeline and a strip, and charts of what its
agent reported. Metrics belong to an instance through the agent's tags: a target's points
carry ``service_name`` = the target's name and the tag ``instance`` = its host:port (the
catalog's address), see agents/runtime.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from jinja2_fragments import render_block
from sqlalchemy import select
from sqlalchemy.orm import Session

from console import charts
from console.live import ws_url
from console.render import render, templates
from console.session import require_role
from controlplane.catalog.instances import HEALTH_EVENT, describe, history
from controlplane.clock import utcnow
from controlplane.store.models import MetricRollup1h
from controlplane.web import DB_SESSION

router = APIRouter(include_in_schema=False)
AGENT_SERVICE = "coreplane_agent"  # agents/runtime.py: where an agent files its own figures
HISTORY_LIMIT = 200
STRIP_MIN_SHARE = 0.2  # % of the health strip: a one-second blip still shows (~2 px)


@dataclass(frozen=True)
class Panel:
    title: str
    metric_type: str
    agg: str = "avg"
    unit: str = ""
    scale: float = 1.0
    group_by: str | None = None


MIB = 1 / 2**20
# fmt: off
PANELS: dict[str, tuple[Panel, ...]] = {
    "redis": (
        Panel("Ops / s", "coreplane_redis_ops_per_second"),
        Panel("Memory used", "coreplane_redis_used_memory_bytes", unit="MiB", scale=MIB),
        Panel("Clients", "coreplane_redis_connected_clients"),
        Panel("Replication lag (replicas)", "coreplane_redis_replication_lag_seconds", "max", "s"),
        Panel("Ping", "coreplane_redis_ping_seconds", unit="ms", scale=1000),
    ),
    "postgres": (
        Panel("Connections by state", "coreplane_postgres_connections", group_by="state"),
        Panel("Commits / s", "coreplane_postgres_commits_per_second"),
        Panel("Rollbacks / s", "coreplane_postgres_rollbacks_per_second"),
        Panel("Cache hit ratio", "coreplane_postgres_cache_hit_ratio", unit="%", scale=100),
        Panel("Replication lag (replicas)", "coreplane_postgres_replication_lag_seconds", "max", "s"),
    ),
    "memcached": (
        Panel("Hit ratio", "coreplane_memcached_hit_ratio", unit="%", scale=100),
        Panel("Items", "coreplane_memcached_items"),
        Panel("Memory used", "coreplane_memcached_bytes", unit="MiB", scale=MIB),
        Panel("Connections", "coreplane_memcached_connections"),
    ),
    "rabbitmq": (
        Panel("Messages ready", "coreplane_rabbitmq_messages_ready"),
        Panel("Messages unacked", "coreplane_rabbitmq_messages_unacked"),
        Panel("Published / s", "coreplane_rabbitmq_publish_per_second"),
        Panel("Delivered / s", "coreplane_rabbitmq_deliver_per_second"),
    ),
    "celery": (
        Panel("Workers online", "coreplane_celery_workers_online"),
        Panel("Queue length", "coreplane_celery_queue_length", group_by="queue"),
        Panel("Tasks by state (total)", "coreplane_celery_tasks_total", "max", group_by="state"),
    ),
    "elasticsearch": (
        Panel("Searches / s", "coreplane_elasticsearch_search_per_second"),
        Panel("Search latency", "coreplane_elasticsearch_search_latency_seconds", unit="ms", scale=1000),
        Panel("Indexing / s", "coreplane_elasticsearch_indexing_per_second"),
        Panel("JVM heap used", "coreplane_elasticsearch_jvm_heap_used_bytes", unit="MiB", scale=MIB),
        Panel("Unassigned shards", "coreplane_elasticsearch_unassigned_shards", "max"),
    ),
    "haproxy": (
        Panel("Current sessions", "coreplane_haproxy_current_sessions", "sum", group_by="proxy"),
        Panel("Requests / s", "coreplane_haproxy_request_rate", "sum", group_by="proxy"),
        Panel("Queued", "coreplane_haproxy_queue_current", "sum", group_by="proxy"),
    ),
    "s3": (
        Panel("Canary", "coreplane_s3_canary_seconds", unit="ms", scale=1000, group_by="op"),
        Panel("Buckets", "coreplane_s3_buckets"),
    ),
    "host": (
        Panel("CPU", "coreplane_host_cpu_ratio", unit="%", scale=100),
        Panel("Memory used", "coreplane_host_memory_used_bytes", unit="MiB", scale=MIB),
        Panel("Load (1 min)", "coreplane_host_load1"),
    ),
    "http": (
        Panel("Response time", "coreplane_http_duration_seconds", unit="ms", scale=1000),
        Panel("Status code", "coreplane_http_status_code", "max"),
    ),
    "channels": (Panel("Round trip", "coreplane_channels_round_trip_seconds", unit="ms", scale=1000),),
    "cache": (
        Panel("Hit ratio", "coreplane_cache_hit_ratio", unit="%", scale=100, group_by="layer"),
        Panel("Processes", "coreplane_cache_processes", "sum"),
    ),
}
# fmt: on
PROBE = Panel("Agent probe duration", "coreplane_agent_probe_duration_seconds", "max", "ms", 1000)
DISCOVERED_MAX = 6


def _href(service: str, address: str) -> str:
    # Every character quoted: a socket path's slashes would otherwise split the URL.
    return f"/services/{quote(service, safe='')}/instances/{quote(address, safe='')}"


def _ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "never"
    seconds = max(0, int((now - then).total_seconds()))
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


def _catalog(session: Session, service: str | None, now: datetime) -> list[dict]:
    services = describe(session, service)
    for s in services:
        counts: dict[str, int] = {}
        for i in s["instances"]:
            counts[i["health"]] = counts.get(i["health"], 0) + 1
            i["href"], i["ago"] = _href(s["name"], i["address"]), _ago(now, i["last_seen_at"])
        s["counts"] = counts
        s["worst"] = next((h for h in ("critical", "warning", "passing") if counts.get(h)), "unknown")
    return services


def services_live_blocks(app: Any, params: dict[str, str], role: str) -> dict[str, str]:
    with app.state.sessionmaker.begin() as session:
        now = utcnow()
        ctx = {
            "services": _catalog(session, params.get("service") or None, now),
            "filtered": params.get("service"),
        }
    return {"catalog": render_block(templates.env, "services.html", "catalog", ctx)}


def _missing(request: Request, template: str, message: str, status: int = 404) -> Response:
    """The page, saying what was not found (or what was wrong with the request)."""
    problem = "Not found" if status == 404 else "Cannot show this"
    return render(request, template, {"missing": message, "problem": problem}, status=status)


@router.get("/services")
def services_page(
    request: Request, _role: str = Depends(require_role("viewer")), session: Session = DB_SESSION
) -> Response:
    ctx = {"services": _catalog(session, None, utcnow()), "filtered": None, "live": ws_url("services")}
    return render(request, "services.html", ctx, block="catalog")


@router.get("/services/{name}")
def service_page(
    request: Request,
    name: str,
    _role: str = Depends(require_role("viewer")),
    session: Session = DB_SESSION,
) -> Response:
    services = _catalog(session, name, utcnow())
    if not services:
        return _missing(request, "services.html", f"No service {name!r} in the catalog.")
    ctx = {"services": services, "filtered": name, "live": ws_url("services", service=name)}
    return render(request, "services.html", ctx, block="catalog")


# --- one instance ---------------------------------------------------------------------


def _transitions(rows: list[dict]) -> list[dict]:
    """History rows (newest first) as from -> to lines."""
    out = []
    for row in rows:
        d = row["details"] or {}
        if row["event_type"] == HEALTH_EVENT:
            line = {
                "what": "health",
                "from": d.get("previous"),
                "to": row["status"],
                "note": d.get("message"),
            }
        else:
            line = {"what": "role", "from": d.get("previous"), "to": d.get("role"), "note": d.get("reason")}
        out.append(line | {"at": row["at"]})
    return out


def _strip(rows: list[dict], current: str, start: datetime, now: datetime) -> list[dict]:
    """The health states over [start, now] as segments with their share of the window: the
    state before the oldest transition is that transition's ``previous``."""
    changes = [r for r in reversed(rows) if r["event_type"] == HEALTH_EVENT]
    state = ((changes[0]["details"] or {}).get("previous") or "unknown") if changes else current
    edges = [(start, state)] + [(r["at"], r["status"]) for r in changes]
    span = (now - start).total_seconds() or 1.0
    segments = []
    for (at, health), (until, _next) in zip(edges, [*edges[1:], (now, None)], strict=True):
        seconds = (min(until, now) - max(at, start)).total_seconds()
        if seconds > 0:
            segments.append({"health": health, "from": max(at, start), "until": until,
                             "share": round(100 * seconds / span, 3)})  # fmt: skip
    return _laid_out(segments)


def _laid_out(segments: list[dict]) -> list[dict]:
    """Each segment's ``x`` and ``width`` on the strip's 0-100 scale (an SVG viewBox: sizes
    as attributes, since the CSP refuses inline styles). A width is the share, at least
    STRIP_MIN_SHARE so a short blip stays visible, all scaled back to fill the strip."""
    widths = [max(s["share"], STRIP_MIN_SHARE) for s in segments]
    scale, x = 100 / (sum(widths) or 1), 0.0
    for segment, width in zip(segments, widths, strict=True):
        segment["x"], segment["width"] = round(x * scale, 3), round(width * scale, 3)
        x += width
    return segments


def _instance(session: Session, service: str, address: str) -> tuple[dict | None, dict | None]:
    found = describe(session, service)
    if not found:
        return None, None
    return found[0], next((i for i in found[0]["instances"] if i["address"] == address), None)


def _live_context(session: Session, service: str, address: str, span: str, now: datetime) -> dict:
    svc, instance = _instance(session, service, address)
    window = charts.RANGES[span][0]
    rows = history(session, service, address, since=now - window, limit=HISTORY_LIMIT)
    return {
        "service": svc,
        "instance": instance,
        "ago": _ago(now, instance["last_seen_at"]) if instance else "",
        "transitions": _transitions(rows),
        "strip": _strip(rows, instance["health"], now - window, now) if instance else [],
        "span": span,
        "truncated": len(rows) >= HISTORY_LIMIT,
    }


def _discovered(session: Session, service: str, address: str, now: datetime) -> tuple[Panel, ...]:
    """For a kind without chosen panels: what this instance reported in the last hour or two
    (the 1-hour roll-up's recent buckets, a handful of rows)."""
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    rows = session.execute(
        select(MetricRollup1h.metric_type, MetricRollup1h.tags)
        .where(MetricRollup1h.service_name == service, MetricRollup1h.bucket >= since)
        .limit(2000)
    ).all()
    names = sorted({m for m, tags in rows if (tags or {}).get("instance") == address})
    return tuple(Panel(m.removeprefix("coreplane_"), m) for m in names[:DISCOVERED_MAX])


def _charts(session: Session, kind: str, service: str, address: str, span: str, now: datetime) -> list[dict]:
    window, step = charts.RANGES[span]
    panels = PANELS.get(kind) or _discovered(session, service, address, now)
    out = []
    for panel in (*panels, PROBE):
        own = panel is not PROBE
        found = charts.query(
            session, panel.metric_type, now=now, window=window, step_s=step, agg=panel.agg,
            service_name=service if own else AGENT_SERVICE,
            tags={"instance": address} if own else {"instance": address, "target": service},
            group_by=panel.group_by,
        )  # fmt: skip
        data = charts.scaled(charts.aligned(found, panel.group_by or "service_name", panel.unit), panel.scale)
        if not panel.group_by and data["series"]:
            data["series"][0]["label"] = panel.title
        values = data["series"][0]["values"] if len(data["series"]) == 1 else []
        out.append({"panel": panel, "data": data, "latest": charts.latest(values)})
    return out


def instance_live_blocks(app: Any, params: dict[str, str], role: str) -> dict[str, str]:
    span = params.get("range") or "1h"
    span = span if span in charts.RANGES else "1h"
    with app.state.sessionmaker.begin() as session:
        ctx = _live_context(session, params.get("service", ""), params.get("address", ""), span, utcnow())
    return {name: render_block(templates.env, "instance.html", name, ctx) for name in ("facts", "timeline")}


INSTANCE_RANGES = ("15m", "1h", "6h", "24h")


@router.get("/services/{name}/instances/{address:path}")
def instance_page(
    request: Request,
    name: str,
    address: str,
    span: str = Query("1h", alias="range"),
    _role: str = Depends(require_role("viewer")),
    session: Session = DB_SESSION,
) -> Response:
    if span not in INSTANCE_RANGES:
        message = f"Unknown range {span!r}: use one of {', '.join(INSTANCE_RANGES)}."
        return _missing(request, "instance.html", message, status=422)
    now = utcnow()
    ctx = _live_context(session, name, address, span, now)
    if ctx["service"] is None:
        return _missing(request, "instance.html", f"No service {name!r} in the catalog.")
    if ctx["instance"] is None:
        return _missing(
            request, "instance.html", f"Service {name!r} has no instance {address!r} in the catalog."
        )
    ctx |= {
        "charts": _charts(session, ctx["service"]["kind"], name, address, span, now),
        "ranges": INSTANCE_RANGES,
        "href": _href(name, address),
        "live": ws_url("instance", service=name, address=address, range=span),
    }
    return render(request, "instance.html", ctx)
