"""Console pages for tasks: runs, workers, queues, analytics, dead letters, workflows."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
