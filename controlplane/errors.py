"""Domain errors, raised below the HTTP layer and translated once at the edge."""

from __future__ import annotations


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


class Rejected(Exception):
    """Input refused as a whole; ``errors`` says which items and why."""

    def __init__(
        self,
        message: str,
        errors: list[dict] | None = None,
        status: int = 422,
        reason: str = "invalid",
    ) -> None:
        super().__init__(message)
        self.errors = errors or []
        self.status = status
        self.reason = reason  # a short label for metrics: invalid, too_large, timestamp, ...

    @classmethod
    def field(cls, detail: str, field: str, reason: str, kind: str = "query") -> Rejected:
        """One input field is wrong: 422 naming it."""
        return cls(detail, [{"kind": kind, "index": None, "field": field, "reason": reason}])
