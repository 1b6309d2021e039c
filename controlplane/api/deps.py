"""Request dependencies of the API: who is calling, and the body within its limit.

The store session (DB_SESSION, READ_SESSION) is in controlplane/web_deps.py, shared with the console.

Authentication is attached once, on the /api/v1 router, so a new route is protected
by default; a route narrows who may call it with ``allow(...)``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from controlplane.auth import digest
from controlplane.errors import Rejected, TooLarge
from controlplane.storage.access import Caller
from controlplane.storage.client import Storage, configured
from controlplane.store.models import Agent, ApiToken

_bearer = HTTPBearer(auto_error=False, description="Admin, agent or API token.")

RANK = {"viewer": 1, "operator": 2, "admin": 3}


@dataclass(frozen=True)
class Principal:
    kind: str  # admin | agent | token
    name: str
    role: str  # viewer | operator | admin | agent
    agent_id: uuid.UUID | None = None


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 past ``limit`` bytes: by its declared length before
    reading, else while streaming (a chunked body declares none)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is {declared} bytes, over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def refuse_nul_bytes(request: Request) -> None:
    """PostgreSQL text cannot hold NUL; refuse it up front instead of failing in the store."""
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise Rejected.field(
                f"query parameter {name!r} contains a NUL byte",
                name,
                "NUL byte",
            )
    if "\x00" in request.url.path or "%00" in request.url.path:
        raise Rejected("the path contains a NUL byte")


def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Principal:
    if credentials is None:
        raise HTTPException(
            401,
            "missing credential: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token_digest = digest(credentials.credentials)
    principal = None
    if token_digest == request.app.state.admin_token_digest:
        principal = Principal("admin", "admin", "admin")
    else:
        with request.app.state.read_sessionmaker() as session:
            agent = session.scalars(
                select(Agent).where(Agent.token_digest == token_digest, Agent.revoked.is_(False))
            ).first()
            if agent is not None:
                principal = Principal("agent", agent.name, "agent", agent.id)
            else:
                token = session.scalars(
                    select(ApiToken).where(
                        ApiToken.token_digest == token_digest, ApiToken.revoked_at.is_(None)
                    )
                ).first()
                if token is not None:
                    principal = Principal("token", token.name, token.role)
    if principal is None:
        raise HTTPException(
            401,
            "the bearer token is not valid (unknown or revoked)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.principal = principal
    return principal


def allow(
    *,
    min_role: str | None = None,
    agents: bool = False,
    agent_refusal: str = "agent tokens may only send data and poll for actions",
) -> Callable[..., Principal]:
    """A dependency admitting people at ``min_role`` or above, and agents if ``agents``
    (otherwise refused with 403 and ``agent_refusal``)."""

    def check(principal: Principal = Depends(authenticate)) -> Principal:
        if principal.kind == "agent":
            if agents:
                return principal
            raise HTTPException(403, agent_refusal)
        if min_role is None or RANK[principal.role] < RANK[min_role]:
            need = min_role or "an agent token"
            raise HTTPException(403, f"this needs the {need} role; you are {principal.role}")
        return principal

    return check


VIEWER = allow(min_role="viewer")
OPERATOR = allow(min_role="operator")
ADMIN = allow(min_role="admin")
AGENT_OR_ADMIN = allow(min_role="admin", agents=True)


def storage_of(request: Request) -> Storage:
    """The process's S3 clients (``app.state.storage``); 503 when storage is not configured."""
    return configured(request.app.state.storage)


_PERSON = allow(min_role="viewer", agent_refusal="agents have no access to application storage")


def caller_of(principal: Principal = Depends(_PERSON)) -> Caller:
    """Whom storage's grants are checked against: an API token by its name and role (the
    admin token is an admin; agents hold no storage grants: 403)."""
    return Caller(principal.name, principal.role)
