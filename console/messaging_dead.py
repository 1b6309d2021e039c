"""Dead-letter pages: /messaging/dead-letters (filters, replay a filtered set) and
/messaging/dead-letters/{id} (inspect, replay, discard) (part C)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
