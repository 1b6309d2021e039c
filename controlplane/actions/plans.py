"""Actions the control plane carries out itself, as steps of agent actions (children):
failover, cache.invalidate, scale, drain. Each plan is a function that looks at the
action and its children and takes the next step; the leader's engine calls ``advance``
on every unfinished one whenever anything about actions changes.

Agents hold the backends' credentials: a child names the catalog ``service`` and
``instance`` (host:port) and the agent fills in the address it has for them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.actions import lifecycle
from controlplane.catalog.instances import instances_of, set_role
from controlplane.store.models import Action, CatalogInstance, InfrastructureMetric

ACTOR = "engine"


def _child(session: Session, parent: Action, kind: str, agent_id, params: dict, now: datetime) -> Action:  # type: ignore[no-untyped-def]
    child, _ = lifecycle.create(
        session,
        kind=kind,
        target=parent.target,
        params=params,
        requested_by=f"action:{parent.id}",
        reason=f"step of {parent.kind} {parent.id}",
        agent_id=agent_id,
        parent_id=parent.id,
        now=now,
        timeout_s=min(parent.timeout_s, 30.0),
    )
    return child


def _fail(session: Session, action: Action, why: str, now: datetime, **output: object) -> None:
    action.result = {"output": output, "error": why}
    lifecycle.move(session, action, "failed", actor=ACTOR, now=now, note=why)


def _succeed(session: Session, action: Action, now: datetime, note: str, **output: object) -> None:
    action.result = {"output": output, "error": None}
    lifecycle.move(session, action, "succeeded", actor=ACTOR, now=now, note=note)


def _latest_offset(session: Session, service: str, address: str, now: datetime) -> float:
    """The replica's last reported replication offset (-1 when none in the last minute)."""
    value = session.scalars(
        select(InfrastructureMetric.value)
        .where(
            InfrastructureMetric.metric_type == "coreplane_redis_replica_offset",
            InfrastructureMetric.service_name == service,
            InfrastructureMetric.timestamp >= now - timedelta(minutes=1),
            InfrastructureMetric.tags["instance"].as_string() == address,
        )
        .order_by(InfrastructureMetric.timestamp.desc())
        .limit(1)
    ).first()
    return -1.0 if value is None else value


def failover(session: Session, action: Action, now: datetime) -> None:
    """Promote the healthy replica with the highest replication offset, repoint the others
    to it, and record the new roles in the catalog."""
    steps = lifecycle.children(session, action)
    instances = {i.address: i for i in instances_of(session, action.target)}
    if not steps:
        failed = (action.params or {}).get("failed_instance")
        old = instances.get(failed) or next((i for i in instances.values() if i.role == "primary"), None)
        if old is None:
            return _fail(session, action, f"service {action.target!r} has no primary in the catalog", now)
        if old.health != "critical" and not (action.params or {}).get("force"):
            return _fail(
                session,
                action,
                f"the primary {old.address} is {old.health}; not failing over "
                "(pass force: true to do it anyway)",
                now,
            )
        candidates = [
            i
            for i in instances.values()
            if i.address != old.address and i.role == "replica" and i.health != "critical" and i.agent_id
        ]
        if not candidates:
            return _fail(
                session, action, f"no healthy replica of {action.target!r} with an agent to promote", now
            )
        best = max(
            candidates, key=lambda i: (_latest_offset(session, action.target, i.address, now), i.address)
        )
        action.result = {"output": {"old_primary": old.address, "new_primary": best.address}, "error": None}
        lifecycle.move(session, action, "running", actor=ACTOR, now=now, note=f"promoting {best.address}")
        _child(
            session,
            action,
            "redis.promote",
            best.agent_id,
            {"service": action.target, "instance": best.address},
            now,
        )
        return None
    if any(s.state not in lifecycle.FINISHED for s in steps):
        return None
    output = dict((action.result or {}).get("output") or {})
    promote = steps[0]
    if promote.state != "succeeded":
        error = (promote.result or {}).get("error") or promote.state
        return _fail(session, action, f"promoting {output.get('new_primary')} failed: {error}", now, **output)
    new, old = instances[output["new_primary"]], instances.get(output["old_primary"])
    if len(steps) == 1:
        set_role(session, new, "primary", now=now, reason=f"promoted by action {action.id}")
        if old is not None:
            set_role(session, old, "replica", now=now, reason=f"failed over by action {action.id}")
        host, _, port = new.address.rpartition(":")
        others = [i for i in instances.values() if i.address not in (new.address, output["old_primary"])]
        for replica in (i for i in others if i.agent_id):
            _child(
                session,
                action,
                "redis.repoint",
                replica.agent_id,
                {
                    "service": action.target,
                    "instance": replica.address,
                    "primary_host": host,
                    "primary_port": int(port),
                },
                now,
            )
        if any(i.agent_id for i in others):
            return None
    errors = [
        f"{s.params.get('instance')}: {(s.result or {}).get('error')}"
        for s in steps[1:]
        if s.state != "succeeded"
    ]
    output["repointed"] = [s.params.get("instance") for s in steps[1:] if s.state == "succeeded"]
    output["repoint_errors"] = errors
    return _succeed(session, action, now, f"{new.address} is the primary of {action.target}", **output)


def _fan_out(
    kind: str, *, roles: tuple[str | None, ...] | None = None
) -> Callable[[Session, Action, datetime], None]:
    """A plan that sends one ``kind`` child to each agent watching the target service
    (to the instances in ``roles`` when given) and succeeds when they all have."""

    def plan(session: Session, action: Action, now: datetime) -> None:
        steps = lifecycle.children(session, action)
        if not steps:
            chosen: dict = {}
            for instance in instances_of(session, action.target):
                if (
                    instance.agent_id
                    and (roles is None or instance.role in roles)
                    and instance.health != "critical"
                ):
                    chosen.setdefault(instance.agent_id, instance)
            if not chosen:
                return _fail(
                    session, action, f"no healthy instance of {action.target!r} with an agent to act", now
                )
            lifecycle.move(session, action, "running", actor=ACTOR, now=now, note=f"{len(chosen)} agent(s)")
            for agent_id, instance in chosen.items():
                params = {**(action.params or {}), "service": action.target, "instance": instance.address}
                _child(session, action, kind, agent_id, params, now)
            return None
        if any(s.state not in lifecycle.FINISHED for s in steps):
            return None
        failed = [s for s in steps if s.state != "succeeded"]
        if failed:
            errors = [
                f"{s.params.get('instance')}: {(s.result or {}).get('error') or s.state}" for s in failed
            ]
            return _fail(session, action, "; ".join(errors), now)
        return _succeed(
            session,
            action,
            now,
            f"{len(steps)} agent(s) done",
            results=[(s.result or {}).get("output") for s in steps],
        )

    return plan


PLANS: dict[str, Callable[[Session, Action, datetime], None]] = {
    "failover": failover,
    "cache.invalidate": _fan_out("cache.flush", roles=("primary", None)),
    "scale": _fan_out("celery.pool"),
    "drain": _fan_out("haproxy.set_server"),
}
AGENT_KINDS = frozenset(
    {"redis.promote", "redis.repoint", "cache.flush", "haproxy.set_server", "celery.pool"}
)


def advance(session: Session, *, now: datetime) -> int:
    """Take the next step of every unfinished plan; returns how many moved."""
    moved = 0
    for action in session.scalars(
        select(Action).where(Action.kind.in_(PLANS), Action.state.in_(("pending", "running")))
    ):
        before = (action.state, action.updated_at)
        PLANS[action.kind](session, action, now)
        moved += (action.state, action.updated_at) != before
    return moved


def agent_of(session: Session, service: str, instance: str | None) -> CatalogInstance | None:
    """The catalog instance an agent action addresses (the first with an agent when no
    instance is named)."""
    for candidate in instances_of(session, service):
        if candidate.agent_id and (instance is None or candidate.address == instance):
            return candidate
    return None
