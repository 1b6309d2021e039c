"""The failover plan: promote the healthy replica with the highest replication offset,
record the new roles in the catalog, and repoint the other replicas to it.

The decisions are pure functions over plain data (``Member``, ``Offset``, ``Step``), so
every refusal and partial path has a unit test that needs no store
(tests/unit/actions/test_failover.py). ``failover`` reads the store, asks them, and takes
one step per call: the engine calls it again whenever one of its steps finishes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.actions import lifecycle
from controlplane.actions.steps import ACTOR, add_step, fail, succeed
from controlplane.catalog.instances import instances_of, set_role
from controlplane.store.models import Action, CatalogInstance, InfrastructureMetric

PROMOTE = "redis.promote"
REPOINT = "redis.repoint"
OFFSET_METRIC = "coreplane_redis_replica_offset"
# An older offset says little about how far the replica got before its primary died, so
# it ranks like none at all, below any replica that reported lately.
OFFSET_MAX_AGE = timedelta(minutes=1)
NO_OFFSET = -1.0

Phase = Literal["choose", "wait", "promote_failed", "repoint", "finish"]


@dataclass(frozen=True)
class Member:
    """What the failover needs of one catalog instance of the service."""

    address: str
    role: str | None
    health: str
    agent_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Offset:
    """A replica's last reported replication offset and when it was read."""

    value: float
    at: datetime


@dataclass(frozen=True)
class Choice:
    """The replica to promote and why; ``new_primary`` is None when the failover is refused."""

    reason: str
    old_primary: Member | None = None
    new_primary: Member | None = None


@dataclass(frozen=True)
class Step:
    """What the plan needs of one of its steps (child actions)."""

    kind: str
    state: str
    instance: str | None = None
    error: str | None = None


# --- decisions (pure) ---------------------------------------------------------------------


def ranked_offset(offset: Offset | None, now: datetime) -> float:
    """The offset to rank a replica by: NO_OFFSET when none was read within OFFSET_MAX_AGE."""
    if offset is None or offset.at < now - OFFSET_MAX_AGE:
        return NO_OFFSET
    return offset.value


def _old_primary(members: Sequence[Member], failed_instance: str | None) -> Member | None:
    # The instance the trigger named; a forced failover names none, so the catalog's primary.
    named = next((m for m in members if m.address == failed_instance), None)
    return named or next((m for m in members if m.role == "primary"), None)


def choose_new_primary(
    members: Sequence[Member],
    offsets: Mapping[str, Offset],
    *,
    target: str,
    failed_instance: str | None,
    force: bool,
    now: datetime,
) -> Choice:
    """The healthy replica with an agent and the highest fresh offset (ties go to the
    highest address, so the choice is stable), or a refusal and its reason."""
    old = _old_primary(members, failed_instance)
    if old is None:
        return Choice(f"service {target!r} has no primary in the catalog")
    if old.health != "critical" and not force:
        return Choice(
            f"the primary {old.address} is {old.health}; not failing over (pass force: true to do it anyway)",
            old_primary=old,
        )
    candidates = [
        m
        for m in members
        if m.address != old.address and m.role == "replica" and m.health != "critical" and m.agent_id
    ]
    if not candidates:
        return Choice(f"no healthy replica of {target!r} with an agent to promote", old_primary=old)
    best = max(candidates, key=lambda m: (ranked_offset(offsets.get(m.address), now), m.address))
    return Choice(f"promoting {best.address}", old_primary=old, new_primary=best)


def _promote_step(steps: Sequence[Step]) -> Step | None:
    return next((s for s in steps if s.kind == PROMOTE), None)


def next_phase(steps: Sequence[Step]) -> Phase:
    """What the plan does next, given its steps so far."""
    if not steps:
        return "choose"
    if any(s.state not in lifecycle.FINISHED for s in steps):
        return "wait"
    promote = _promote_step(steps)
    if promote is None or promote.state != "succeeded":
        return "promote_failed"
    if not any(s.kind == REPOINT for s in steps):
        return "repoint"
    return "finish"


def promote_failure(new_primary: str | None, steps: Sequence[Step]) -> str:
    """Why the failover failed when its promote step did not succeed."""
    promote = _promote_step(steps)
    error = "no promote step" if promote is None else promote.error or promote.state
    return f"promoting {new_primary} failed: {error}"


def to_repoint(members: Sequence[Member], *, new_primary: str, old_primary: str | None) -> list[Member]:
    """The instances to follow the new primary. The old primary is left out: it is down,
    and when it comes back the catalog's conflict rule repoints it. One without an agent
    cannot be told."""
    return [m for m in members if m.address not in (new_primary, old_primary) and m.agent_id]


def repoint_params(target: str, replica: str, new_primary: str) -> dict:
    host, _, port = new_primary.rpartition(":")
    return {"service": target, "instance": replica, "primary_host": host, "primary_port": int(port)}


def repoint_outcome(steps: Sequence[Step]) -> tuple[list[str | None], list[str]]:
    """The replicas that follow the new primary, and an error for each that does not.
    A repoint that failed does not fail the failover: the new primary serves already."""
    repoints = [s for s in steps if s.kind == REPOINT]
    done = [s.instance for s in repoints if s.state == "succeeded"]
    errors = [f"{s.instance}: {s.error}" for s in repoints if s.state != "succeeded"]
    return done, errors


# --- reading the store ----------------------------------------------------------------------


def member_of(instance: CatalogInstance) -> Member:
    return Member(instance.address, instance.role, instance.health, instance.agent_id)


def step_of(action: Action) -> Step:
    return Step(
        action.kind, action.state, (action.params or {}).get("instance"), (action.result or {}).get("error")
    )


def latest_offset(session: Session, service: str, address: str, now: datetime) -> Offset | None:
    """The replica's last reported replication offset. Older readings than OFFSET_MAX_AGE
    would rank as none anyway, so the query stops there (the recent end of the index)."""
    row = session.execute(
        select(InfrastructureMetric.value, InfrastructureMetric.timestamp)
        .where(
            InfrastructureMetric.metric_type == OFFSET_METRIC,
            InfrastructureMetric.service_name == service,
            InfrastructureMetric.timestamp >= now - OFFSET_MAX_AGE,
            InfrastructureMetric.tags["instance"].as_string() == address,
        )
        .order_by(InfrastructureMetric.timestamp.desc())
        .limit(1)
    ).first()
    return None if row is None else Offset(row.value, row.timestamp)


# --- steps ------------------------------------------------------------------------------------


def _start(session: Session, action: Action, now: datetime) -> None:
    """Choose the replica and send it the promote step, or fail with the refusal."""
    members = [member_of(i) for i in instances_of(session, action.target)]
    offsets = {
        m.address: offset
        for m in members
        if (offset := latest_offset(session, action.target, m.address, now)) is not None
    }
    params = action.params or {}
    choice = choose_new_primary(
        members,
        offsets,
        target=action.target,
        failed_instance=params.get("failed_instance"),
        force=bool(params.get("force")),
        now=now,
    )
    if choice.new_primary is None or choice.old_primary is None:
        return fail(session, action, choice.reason, now)
    new, old = choice.new_primary, choice.old_primary
    action.result = {"output": {"old_primary": old.address, "new_primary": new.address}, "error": None}
    lifecycle.move(session, action, "running", actor=ACTOR, now=now, note=choice.reason)
    add_step(session, action, PROMOTE, new.agent_id, {"service": action.target, "instance": new.address}, now)
    return None


def _record_roles(
    session: Session, action: Action, new: CatalogInstance, old: CatalogInstance | None, now: datetime
) -> None:
    set_role(session, new, "primary", now=now, reason=f"promoted by action {action.id}")
    if old is not None:
        set_role(session, old, "replica", now=now, reason=f"failed over by action {action.id}")


def _send_repoints(session: Session, action: Action, output: dict, now: datetime) -> bool:
    """Record the new roles, then send a repoint step to each other instance; False when
    there is none to send (the plan can finish at once)."""
    instances = {i.address: i for i in instances_of(session, action.target)}
    new = instances[output["new_primary"]]
    _record_roles(session, action, new, instances.get(output["old_primary"]), now)
    replicas = to_repoint(
        [member_of(i) for i in instances.values()], new_primary=new.address, old_primary=output["old_primary"]
    )
    for replica in replicas:
        params = repoint_params(action.target, replica.address, new.address)
        add_step(session, action, REPOINT, replica.agent_id, params, now)
    return bool(replicas)


def _finish(session: Session, action: Action, steps: Sequence[Step], output: dict, now: datetime) -> None:
    output["repointed"], output["repoint_errors"] = repoint_outcome(steps)
    succeed(session, action, now, f"{output['new_primary']} is the primary of {action.target}", **output)


def failover(session: Session, action: Action, now: datetime) -> None:
    """Promote the healthy replica with the highest replication offset, repoint the others
    to it, and record the new roles in the catalog (one step per call)."""
    steps = [step_of(s) for s in lifecycle.children(session, action)]
    phase = next_phase(steps)
    if phase == "choose":
        return _start(session, action, now)
    if phase == "wait":
        return None
    output = dict((action.result or {}).get("output") or {})
    if phase == "promote_failed":
        return fail(session, action, promote_failure(output.get("new_primary"), steps), now, **output)
    if phase == "repoint" and _send_repoints(session, action, output, now):
        return None
    return _finish(session, action, steps, output, now)
