"""Unauthenticated endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from controlplane import telemetry
from controlplane.api.problems import problem
from controlplane.store.db import ping

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process is serving")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the store answers", response_model=None)
async def readyz(request: Request) -> dict[str, str] | Response:
    try:
        await asyncio.wait_for(asyncio.to_thread(ping, request.app.state.engine), timeout=5)
    except Exception as exc:  # noqa: BLE001 - any store failure means "not ready"
        return problem(503, "Not ready", f"the store does not answer: {type(exc).__name__}: {exc}")
    return {"status": "ready", "store": request.app.state.engine.dialect.name}


@router.get("/metrics", summary="Prometheus metrics of this process and the store's counters")
def metrics(request: Request) -> Response:
    # A sync route: the store's figures are read in the thread pool, off the event loop.
    return Response(telemetry.exposition(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
