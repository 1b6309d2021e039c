"""Actions the control plane carries out itself, as steps of agent actions (children):
failover, cache.invalidate, scale, drain. Each plan is a function that looks at the
action and its children and takes the next step; the leader's engine calls ``advance``
on every unfinished one whenever anything about actions changes.

Agents hold the backends' credentials: a child names the catalog ``service`` and
``instance`` (host:port) and the agent fills in the address it has for them.

The failover, whose choice has several refusal paths, is in ``failover.py``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.actions import lifecycle
from controlplane.actions.failover import failover
from controlplane.actions.steps import ACTOR, add_step, fail, succeed
from controlplane.catalog.instances import instances_of
from controlplane.errors import Rejected
from controlplane.messaging import dead as messaging_dead
from controlplane.messaging import operations as mq_operations
from controlplane.storage import restore as storage_restore
from controlplane.store.models import Action, CatalogInstance
from controlplane.tasks import operations as task_operations


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
                return fail(
                    session, action, f"no healthy instance of {action.target!r} with an agent to act", now
                )
            lifecycle.move(session, action, "running", actor=ACTOR, now=now, note=f"{len(chosen)} agent(s)")
            for agent_id, instance in chosen.items():
                params = {**(action.params or {}), "service": action.target, "instance": instance.address}
                add_step(session, action, kind, agent_id, params, now)
            return None
        if any(s.state not in lifecycle.FINISHED for s in steps):
            return None
        failed = [s for s in steps if s.state != "succeeded"]
        if failed:
            errors = [
                f"{(s.params or {}).get('instance')}: {(s.result or {}).get('error') or s.state}"
                for s in failed
            ]
            return fail(session, action, "; ".join(errors), now)
        return succeed(
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
    # Task operations (target "celery"): the leader's control loop carries them out with its
    # Celery app before these plans run; these only fail them when it has no broker.
    **task_operations.PLANS,
    # messaging.replay and queue.purge (target "rabbitmq"): steps for the agent watching RabbitMQ.
    **messaging_dead.PLANS,
    # Queue management (mq.*, target "rabbitmq"): carried out by the leader's control loop
    # like the task operations; these only fail them when it has no broker.
    **mq_operations.PLANS,
    # storage.restore (target "s3"): carried out by the leader's control loop with its S3
    # clients, outside the round's transaction (``advance`` leaves them to it then); this
    # only fails it when storage is not configured there.
    **storage_restore.PLANS,
}
# The agent's actuators (agents.actuators.ACTUATORS), named again so the control plane's
# actions do not depend on the agent package; tests/unit/agents/test_registries.py keeps them equal.
AGENT_KINDS = frozenset(
    {"redis.promote", "redis.repoint", "cache.flush", "haproxy.set_server", "celery.pool",
     "rabbitmq.publish", "rabbitmq.purge"}
)  # fmt: skip


MAX_POOL = 1000  # worker processes a scale action may ask for or bound a pool at
MAX_ITEMS = 1000  # tags or keys in one cache.invalidate
MAX_PARAMS_BYTES = 65536
CACHE_LISTS = ("tags", "keys", "prefixes")
DRAIN_STATES = ("ready", "drain", "maint")


def _bad(name: str, why: str) -> Rejected:
    return Rejected.field(f"params.{name}: {why}", f"params.{name}", why, kind="body")


def _whole(params: dict, name: str, low: int, high: int) -> int | None:
    """params[name] as a whole number within [low, high] (None when absent); 1e30, -5,
    "3" or true are refused, naming the param."""
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer() and low <= value <= high:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(name, f"must be a whole number from {low} to {high}, not {value!r}")
    return value


def _text(params: dict, name: str, max_length: int, *, required: bool = False) -> None:
    value = params.get(name)
    if value is None and not required:
        return
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise _bad(name, f"must be text of 1 to {max_length} characters")


def _check_scale(params: dict) -> None:
    if params.get("op", "grow") not in ("grow", "shrink", "autoscale"):
        raise _bad("op", f"must be grow, shrink or autoscale, not {params.get('op')!r}")
    _whole(params, "n", 1, MAX_POOL)
    low, high = _whole(params, "min", 0, MAX_POOL), _whole(params, "max", 1, MAX_POOL)
    if low is not None and high is not None and low > high:
        raise _bad("min", f"min ({low}) is more than max ({high})")
    if params.get("op") == "autoscale" and (low is None or high is None):
        raise _bad("min", "autoscale needs both min and max")


def _check_cache(params: dict) -> None:
    _text(params, "namespace", 100)
    _text(params, "prefix", 500)
    for name in CACHE_LISTS:
        items = params.get(name)
        if items is None:
            continue
        if not isinstance(items, list) or len(items) > MAX_ITEMS:
            raise _bad(name, f"must be a list of at most {MAX_ITEMS} strings")
        if not all(isinstance(i, str) and 0 < len(i) <= 500 for i in items):
            raise _bad(name, "each item must be text of 1 to 500 characters")


def _check_drain(params: dict) -> None:
    _text(params, "backend", 100, required=True)
    _text(params, "server", 100, required=True)
    if params.get("state") is not None and params["state"] not in DRAIN_STATES:
        raise _bad("state", f"must be one of {', '.join(DRAIN_STATES)}, not {params['state']!r}")
    _whole(params, "weight", 0, 256)


def _check_failover(params: dict) -> None:
    if not isinstance(params.get("force", False), bool):
        raise _bad("force", "must be true or false")
    _text(params, "failed_instance", 255)


PARAM_CHECKS: dict[str, Callable[[dict], None]] = {
    "scale": _check_scale,
    "cache.invalidate": _check_cache,
    "drain": _check_drain,
    "failover": _check_failover,
    **task_operations.PARAM_CHECKS,
    **messaging_dead.PARAM_CHECKS,
    **mq_operations.PARAM_CHECKS,
    **storage_restore.PARAM_CHECKS,
}


def check_params(kind: str, params: dict) -> None:
    """Refuse (Rejected, naming the param) parameters the plan or the agent could not
    carry out, before the action is stored: the same check for the API and the console."""
    try:
        text = json.dumps(params, allow_nan=False)
    except (ValueError, RecursionError):
        raise _bad("*", "must be plain JSON (no NaN, Infinity or deep nesting)") from None
    if "\\u0000" in text:
        raise _bad("*", "NUL bytes cannot be stored")
    if len(text) > MAX_PARAMS_BYTES:
        raise _bad("*", f"{len(text)} bytes of JSON, over {MAX_PARAMS_BYTES}")
    check = PARAM_CHECKS.get(kind)
    if check is not None:
        check(params)


def advance(session: Session, *, now: datetime, leave: tuple[str, ...] = ()) -> int:
    """Take the next step of every unfinished plan, except of the kinds in ``leave`` (the
    leader carries them out on its own, outside this transaction: storage.restore with
    storage); returns how many moved."""
    moved = 0
    kinds = [kind for kind in PLANS if kind not in leave]
    for action in session.scalars(
        select(Action).where(Action.kind.in_(kinds), Action.state.in_(("pending", "running")))
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
