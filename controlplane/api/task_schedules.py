"""Task schedules: /api/v1/tasks/schedules."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["tasks"])
