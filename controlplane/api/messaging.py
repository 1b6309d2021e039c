"""Messaging reads: queues with their depths, rates and consumers, analytics, and definition
backups (part D)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/messaging", tags=["messaging"])
