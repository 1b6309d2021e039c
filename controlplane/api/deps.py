"""Request dependencies: the store session and credentials."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from controlplane.auth import matches

_bearer = HTTPBearer(auto_error=False)


def db_session(request: Request) -> Iterator[Session]:
    """A session whose transaction commits when the route returns without error."""
    with request.app.state.sessionmaker.begin() as session:
        yield session


def require_admin(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> None:
    if credentials is None:
        raise HTTPException(
            401,
            "missing credential: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not matches(credentials.credentials, request.app.state.admin_token_digest):
        raise HTTPException(
            401, "the bearer token is not valid", headers={"WWW-Authenticate": "Bearer"}
        )
