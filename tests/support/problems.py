"""The problem+json answers every area's API refuses with (controlplane/api/problems.py)."""

from __future__ import annotations

import httpx


def fields(answer: httpx.Response) -> list[str]:
    """The fields a problem+json answer's errors name."""
    return [e.get("field") for e in answer.json().get("errors") or []]
