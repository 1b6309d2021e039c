"""Collectors: one per backend type, each probing with the backend's own client.

A collector's ``collect()`` returns an Observation or raises when the backend does not
answer (the runtime turns that into a critical health state). Registered explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Observation:
    metrics: list[tuple[str, float, dict[str, str]]] = field(default_factory=list)
    status: str = "passing"  # passing | warning | critical
    message: str = ""
    role: str | None = None  # as the backend reports it (primary, replica), when it has one

    def add(self, name: str, value: float | int | None, **tags: str) -> None:
        if value is not None:
            self.metrics.append((name, float(value), tags))
