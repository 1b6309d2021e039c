"""Domain errors, raised below the HTTP layer and translated once at the edge.

They say what went wrong in the domain's words, never which HTTP status that is: the
API (controlplane/api/problems.py) and the console (console/errors.py) each map them to
a status in one table, so a use case in controlplane/ops serves both the same way.
"""

from __future__ import annotations


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


class Unavailable(Exception):
    """A backend the request needs (RabbitMQ, say) did not answer: try again later."""


class Forbidden(Exception):
    """The caller may not do this, whoever asks: a reserved setting, another agent's data."""


class Rejected(Exception):
    """Input refused as a whole; ``errors`` says which items and why."""

    default_reason = "invalid"

    def __init__(self, message: str, errors: list[dict] | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []
        # A short label for metrics: invalid, too_large, timestamp, bad_encoding, ...
        self.reason = reason or self.default_reason

    @classmethod
    def field(cls, detail: str, field: str, reason: str, kind: str = "query") -> Rejected:
        """One input field is wrong, naming it."""
        return cls(detail, [{"kind": kind, "index": None, "field": field, "reason": reason}])


class TooLarge(Rejected):
    """The input is over a size or count limit: the sender should split it."""

    default_reason = "too_large"


class Unreadable(Rejected):
    """The body cannot be decoded at all (not gzip, not JSON), so nothing in it was judged."""

    default_reason = "bad_encoding"


class Unsupported(Rejected):
    """The body comes in an encoding this server does not speak."""
