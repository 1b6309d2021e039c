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
    if destination:
        kwargs["limit"] = len(destination)  # stop waiting once every named worker answered
    n = int(params.get("n", 1))
    if op in ("grow", "shrink") and (params.get("min") is not None or params.get("max") is not None):
        n, sizes = _within_bounds(app, op, n, params.get("min"), params.get("max"), destination)
        if n <= 0:
            return {"skipped": f"every pool is at its bound for {op}", "pool_sizes": sizes}
    if op == "grow":
        replies = app.control.pool_grow(n, **kwargs)
    elif op == "shrink":
        replies = app.control.pool_shrink(n, **kwargs)
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


def _within_bounds(
    app: Celery, op: str, n: int, low: int | None, high: int | None, destination
) -> tuple[int, dict]:
    """How far ``op`` may go without a pool leaving [low, high] (by the pool closest to the bound)."""
    limit = len(destination) if destination else None
    stats = app.control.inspect(timeout=2.0, destination=destination, limit=limit).stats() or {}
    sizes = {worker: len(s.get("pool", {}).get("processes", [])) for worker, s in stats.items()}
    if not sizes:
        raise ActuatorError("no worker answered to report its pool size")
    if op == "grow":
        room = int(high) - max(sizes.values()) if high is not None else n
    else:
        room = min(sizes.values()) - int(low) if low is not None else n
    return min(n, room), sizes
