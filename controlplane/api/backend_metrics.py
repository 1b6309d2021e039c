"""GET /metrics/backends: the estate's latest figures for a Prometheus that scrapes only the
control plane (scrape it with ``honor_labels: true``: the ``instance`` label is the backend's,
and a viewer token as the bearer).

Every series an agent reported in the last WINDOW, under its stored name, at its latest
value, labelled ``service`` (the catalog service), ``instance`` and its other tags; plus
``coreplane_instance_health`` per catalog instance and
``coreplane_agent_last_seen_timestamp_seconds`` per agent.

Bounded whatever the store's size: the 1-minute roll-ups (index on bucket) say which
series reported lately and in which minute last; the raw points are then read only from
that minute on, per (metric, service), on the raw table's (metric_type, service_name,
timestamp) index.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from controlplane.api.deps import VIEWER
from controlplane.clock import utcnow
from controlplane.store.models import (
    Agent,
    CatalogInstance,
    CatalogService,
    InfrastructureMetric,
    MetricRollup1m,
)
from controlplane.store.writes import series_key

router = APIRouter()

WINDOW = timedelta(minutes=5)
PAIRS_PER_QUERY = 200
HEALTH = {"passing": 1.0, "warning": 0.5, "critical": 0.0}
# Ours: a tag of the same name is kept as tag_<name>. (`job` too: scraped with
# honor_labels, a tag would replace the scrape job's own label.)
RESERVED = {"service", "job"}
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_NOT_LABEL = re.compile(r"[^a-zA-Z0-9_]")

Point = tuple[str, str, dict, float, datetime]  # metric_type, service_name, tags, value, timestamp


def recent_points(session: Session, now: datetime) -> list[Point]:
    """The latest point of every series reported since ``now - WINDOW``, less the series an
    instance's role change left behind (see ``current``)."""
    r = MetricRollup1m
    since = (now - WINDOW).replace(second=0, microsecond=0)
    starts: dict[tuple[str, str], datetime] = {}
    for metric_type, service_name, last_bucket in session.execute(
        select(r.metric_type, r.service_name, func.max(r.bucket))
        .where(r.bucket >= since)
        .group_by(r.metric_type, r.service_name, r.series_key)
    ):
        pair = (metric_type, service_name)
        starts[pair] = min(starts.get(pair, last_bucket), last_bucket)
    m = InfrastructureMetric
    latest: dict[tuple[str, str, str], Point] = {}
    pairs = sorted(starts.items())
    for i in range(0, len(pairs), PAIRS_PER_QUERY):
        ranges = [
            and_(m.metric_type == mt, m.service_name == sn, m.timestamp >= start, m.timestamp <= now)
            for (mt, sn), start in pairs[i : i + PAIRS_PER_QUERY]
        ]
        for point in session.execute(
            select(m.metric_type, m.service_name, m.tags, m.value, m.timestamp).where(or_(*ranges))
        ):
            key = (point[0], point[1], series_key(point[2] or {}))
            if key not in latest or point[4] >= latest[key][4]:
                latest[key] = tuple(point)
    return current(list(latest.values()))


def current(points: list[Point]) -> list[Point]:
    """Drop a series whose instance reported the same metric later under another role.

    A role is a state, not an identity: a replica promoted reports role=primary from then
    on, and a Redis that stops answering reports coreplane_redis_up 0 without the role it
    had. Left in, the old series would say "up 1" (or "replica") for minutes after the fact.
    """
    newest: dict[tuple, datetime] = {}

    def identity(p: Point) -> tuple:
        return p[0], p[1], series_key({k: v for k, v in (p[2] or {}).items() if k != "role"})

    for p in points:
        key = identity(p)
        newest[key] = max(newest.get(key, p[4]), p[4])
    return [p for p in points if p[4] >= newest[identity(p)]]


def metric_name(name: str) -> str:
    name = _NOT_NAME.sub("_", name)
    return f"_{name}" if name[:1].isdigit() else name


def label_name(key: str) -> str:
    name = _NOT_LABEL.sub("_", key) or "_"
    if name[0].isdigit():
        name = f"_{name}"
    if name.startswith("__") or name in RESERVED:  # `__` is Prometheus's own
        name = f"tag_{name.lstrip('_')}"
    return name


def _labels(service: str, tags: dict) -> dict[str, str]:
    labels = {"service": service}
    for key in sorted(tags):
        labels.setdefault(label_name(key), str(tags[key]))  # two keys sanitised alike: the first
    return labels


def _help(name: str) -> str:
    text = f"Latest value of {name} reported by coreplane agents (series seen in the last 5 minutes)."
    if name.endswith("_total"):
        text += (
            " A counter, exposed as a gauge of its last reported value: rate() and increase() still apply."
        )
    return text


def families(session: Session, now: datetime) -> Iterator[Metric]:
    """Every family /metrics/backends exposes, built from the store."""
    built: dict[str, Metric] = {}
    seen: set[tuple] = set()
    newest_first = sorted(recent_points(session, now), key=lambda p: p[4], reverse=True)
    for metric_type, service, tags, value, _ in newest_first:
        name = metric_name(metric_type)
        labels = _labels(service, tags or {})
        identity = (name, tuple(sorted(labels.items())))
        if identity in seen:  # two stored names sanitised alike: the newest point wins
            continue
        seen.add(identity)
        family = built.setdefault(name, Metric(name, _help(name), "gauge"))
        family.add_sample(name, labels, value)
    yield from (built[name] for name in sorted(built))
    yield _instance_health(session)
    yield _agents_last_seen(session)


def _instance_health(session: Session) -> Metric:
    family = Metric(
        "coreplane_instance_health",
        "Health of each catalog instance: 1 passing, 0.5 warning, 0 critical (unknown: absent).",
        "gauge",
    )
    s, i = CatalogService, CatalogInstance
    for service, kind, address, role, health in session.execute(
        select(s.name, s.kind, i.address, i.role, i.health).join(s, i.service_id == s.id)
    ):
        if health in HEALTH:
            labels = {"service": service, "instance": address, "kind": kind, "role": role or ""}
            family.add_sample("coreplane_instance_health", labels, HEALTH[health])
    return family


def _agents_last_seen(session: Session) -> Metric:
    name = "coreplane_agent_last_seen_timestamp_seconds"
    family = Metric(name, "When each agent last reached the control plane (Unix time).", "gauge")
    for agent, seen in session.execute(
        select(Agent.name, Agent.last_seen_at).where(
            Agent.revoked.is_(False), Agent.last_seen_at.is_not(None)
        )
    ):
        if seen is not None:  # the query leaves out agents never seen; this tells mypy
            family.add_sample(name, {"agent": agent}, (seen - datetime(1970, 1, 1)).total_seconds())
    return family


class _Snapshot:
    """A collector over families built already (one per scrape)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self.metrics)


def exposition(session: Session, now: datetime) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(list(families(session, now))))
    return generate_latest(registry)


@router.get(
    "/metrics/backends",
    summary="Prometheus metrics of the backends, as agents last reported them",
    # Unlike /metrics (the process's own figures), this names every instance, address and
    # agent of the estate: it needs a credential like /api/v1/metrics does.
    dependencies=[Depends(VIEWER)],
)
def backend_metrics(request: Request) -> Response:
    with request.app.state.sessionmaker() as session:
        body = exposition(session, utcnow())
    # Names and labels are sanitised already, so the body is the classic 0.0.4 text format,
    # which every Prometheus reads; say so rather than 1.0.0 (prometheus-client's default).
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)
