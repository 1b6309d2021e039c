"""API tokens for people and tools (Grafana, scripts), with a role each. Admin only."""

from __future__ import annotations

import uuid
from typing import Literal, cast

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.api.deps import ADMIN, Principal
from controlplane.auth import digest, new_token
from controlplane.clock import utcnow
from controlplane.errors import NotFound
from controlplane.store.models import ApiToken
from controlplane.web import DB_SESSION

router = APIRouter(prefix="/tokens", tags=["auth"])


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._\- ]+$")
    role: Literal["viewer", "operator", "admin"]


class TokenCreated(BaseModel):
    id: uuid.UUID
    name: str
    role: str
    token: str = Field(description="Shown once; only its digest is stored.")


@router.post("", status_code=201, response_model=TokenCreated, summary="Issue an API token")
def create_token(
    token_in: TokenCreate, admin: Principal = Depends(ADMIN), session: Session = DB_SESSION
) -> TokenCreated:
    token = new_token()
    row = ApiToken(
        name=token_in.name,
        role=token_in.role,
        token_digest=digest(token),
        created_at=utcnow(),
        created_by=admin.name,
    )
    session.add(row)
    session.flush()
    audit.record(session, actor=f"{admin.kind}:{admin.name}", action="token.create", target=row.name,
                 details={"id": str(row.id), "role": row.role})  # fmt: skip
    return TokenCreated(id=row.id, name=row.name, role=row.role, token=token)


@router.delete("/{token_id}", status_code=204, summary="Revoke an API token")
def revoke_token(
    token_id: uuid.UUID, admin: Principal = Depends(ADMIN), session: Session = DB_SESSION
) -> None:
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    revoked = cast(CursorResult, result).rowcount  # an UPDATE's result has a row count
    if not revoked:
        raise NotFound(f"no active token {token_id}")
    audit.record(session, actor=f"{admin.kind}:{admin.name}", action="token.revoke", target=str(token_id))
