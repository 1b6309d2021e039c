"""What the API and the console share at the HTTP edge: the store session of a request,
and the HTTP status of each domain error.

It lives outside both so neither imports the other (DESIGN.md §2, checked by
lint-imports): controlplane/api/problems.py answers an error as problem+json,
console/errors.py as an HTML page, both with the status ``status_of`` gives.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from controlplane.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Rejected,
    TooLarge,
    Unavailable,
    Unreadable,
    Unsupported,
)


def db_session(request: Request) -> Iterator[Session]:
    """A session whose transaction commits when the route returns without error.

    Routes take it as ``DB_SESSION`` (and ``READ_SESSION``), never a bare
    ``Depends(db_session)``: FastAPI's default ends a yield dependency after the response
    is sent, so the client would get its 2xx before the commit, and a commit that then
    failed would be a lost write answered as a success.
    tests/integration/store/test_commit_before_answer.py checks every route."""
    with request.app.state.sessionmaker.begin() as session:
        yield session


def read_session(request: Request) -> Iterator[Session]:
    """A session for a route that only reads: on SQLite it never waits for the write lock
    (controlplane/store/db.py), so a long write cannot hold up GETs."""
    with request.app.state.read_sessionmaker.begin() as session:
        yield session


def client_address(request: Request) -> str | None:
    """The caller's address for the audit log: the TCP peer, or the address a configured
    trusted proxy forwarded (COREPLANE_SERVER__TRUSTED_PROXIES: uvicorn rewrites
    request.client only then)."""
    return request.client.host if request.client else None


# The session closes (commits) when the route returns, before the answer leaves.
DB_SESSION = Depends(db_session, scope="function")
READ_SESSION = Depends(read_session, scope="function")

# Most specific first: a TooLarge is also a Rejected.
STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (Unreadable, 400),
    (TooLarge, 413),
    (Unsupported, 415),
    (Rejected, 422),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (Unavailable, 503),
)
DOMAIN_ERRORS = tuple(kind for kind, _ in STATUSES)


def status_of(exc: Exception) -> int:
    """The HTTP status a domain error is answered with (500 for anything else)."""
    return next((status for kind, status in STATUSES if isinstance(exc, kind)), 500)
