"""Publishing from the API: POST /api/v1/messaging/publish (part B)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/messaging", tags=["messaging"])
