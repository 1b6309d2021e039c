"""Topology and queue pages: /messaging/topology (the diff, apply) and /messaging/queues/{name}
(a queue, purge, delete, move, policies, with preview and confirm) (part A)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
