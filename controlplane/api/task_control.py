"""Submitting tasks and workflows, cancelling, retrying, purging, dead letters."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["tasks"])
