"""Placeholder: being written (issue 7)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)


def live_blocks(app, params: dict[str, str], role: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {}
