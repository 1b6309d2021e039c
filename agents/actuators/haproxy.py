"""HAProxy through its admin socket: set a server's state (ready/drain/maint) and weight."""

from __future__ import annotations

from typing import Any

from agents.actuators import ActuatorError, require
from agents.collectors.haproxy import runtime_command, show_stat

STATES = {"ready", "drain", "maint"}
SHOWN = {"ready": "UP", "drain": "DRAIN", "maint": "MAINT"}


def set_server(params: dict[str, Any]) -> dict[str, Any]:
    sock, backend, server = require(params, "socket", "backend", "server")
    state, weight = params.get("state"), params.get("weight")
    if state is None and weight is None:
        raise ActuatorError("give state (ready, drain or maint) and/or weight")
    if state is not None and state not in STATES:
        raise ActuatorError(f"state must be one of ready, drain, maint; got {state!r}")
    for command in ([f"set server {backend}/{server} state {state}"] if state else []) + (
        [f"set server {backend}/{server} weight {int(weight)}"] if weight is not None else []
    ):
        answer = runtime_command(sock, command, timeout=5).strip()
        if answer:  # HAProxy answers nothing on success
            raise ActuatorError(f"HAProxy refused {command!r}: {answer}")
    row = next((r for r in show_stat(sock, 5) if r["pxname"] == backend and r["svname"] == server), None)
    if row is None:
        raise ActuatorError(f"no server {backend}/{server} in show stat")
    return {"status": row["status"], "weight": row.get("weight")}
