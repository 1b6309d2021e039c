"""The Messaging page (/messaging): every queue with its depth, rates, consumers and charts
(part D)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
