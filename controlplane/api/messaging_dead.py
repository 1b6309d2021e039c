"""Dead letters archived from the dead-letter queues: list, inspect, replay, discard (part C)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/messaging", tags=["messaging"])
