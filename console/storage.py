"""Placeholder: the storage console pages are being built."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
