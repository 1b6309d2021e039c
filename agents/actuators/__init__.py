"""Actuators: what an agent can do to a backend. Each takes the action's params and
returns an output dict, or raises ActuatorError with a reason. Registered explicitly."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


class ActuatorError(Exception):
    pass


ACTUATORS = {
    "redis.promote": "agents.actuators.redis:promote",
    "redis.repoint": "agents.actuators.redis:repoint",
    "cache.flush": "agents.actuators.cache:flush",
    "haproxy.set_server": "agents.actuators.haproxy:set_server",
    "celery.pool": "agents.actuators.celery:pool",
}


def actuator(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    if kind not in ACTUATORS:
        raise ActuatorError(f"unknown action kind {kind!r}; this agent knows: {', '.join(sorted(ACTUATORS))}")
    module, _, name = ACTUATORS[kind].partition(":")
    return getattr(import_module(module), name)


def require(params: dict[str, Any], *names: str) -> list[Any]:
    missing = [n for n in names if params.get(n) in (None, "")]
    if missing:
        raise ActuatorError(f"missing parameter(s): {', '.join(missing)}")
    return [params[n] for n in names]
