"""Topology and queue management: the definition's diff and apply, declare, purge, delete,
move, policies, each as an action (part A)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/messaging", tags=["messaging"])
