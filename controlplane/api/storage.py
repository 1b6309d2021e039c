"""Placeholder: the storage routes of this module are being built."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["storage"])
