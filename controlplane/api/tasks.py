"""Task runs, their analytics, workers and queues: GET /api/v1/tasks..."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["tasks"])
