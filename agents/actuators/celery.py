"""Celery worker pools: grow, shrink, or set autoscale bounds, through remote control."""

from __future__ import annotations

from typing import Any

from celery import Celery

from agents.actuators import ActuatorError, require


def pool(params: dict[str, Any]) -> dict[str, Any]:
    broker, op = require(params, "broker", "op")
    app = Celery(broker=broker)
    destination = params.get("destination")  # worker names; all when unset
    kwargs = {"reply": True, "timeout": 5.0, "destination": destination}
    if op == "grow":
        replies = app.control.pool_grow(int(params.get("n", 1)), **kwargs)
    elif op == "shrink":
        replies = app.control.pool_shrink(int(params.get("n", 1)), **kwargs)
    elif op == "autoscale":
        low, high = require(params, "min", "max")
        replies = app.control.autoscale(int(high), int(low), **kwargs)
    else:
        raise ActuatorError(f"op must be grow, shrink or autoscale; got {op!r}")
    if not replies:
        raise ActuatorError("no worker answered the pool command")
    errors = [r for reply in replies for r in reply.values() if "error" in r]
    if errors:
        raise ActuatorError(f"worker(s) refused: {errors}")
    return {"replies": replies}
