"""Who leads the control plane (evaluates rules, dispatches plans)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from controlplane import leader
from controlplane.api.deps import VIEWER

router = APIRouter(tags=["leader"])


@router.get("/leader", dependencies=[Depends(VIEWER)], summary="The leader and this process's part")
def read_leader(request: Request) -> dict[str, Any]:
    control = request.app.state.control
    with request.app.state.sessionmaker.begin() as session:
        lease = leader.current(session)
    return {
        "this_process": {"holder": control.leadership.holder, "leads": control.leadership.is_leader},
        "lease": lease,
        "dialect": request.app.state.engine.dialect.name,
    }
