"""API tokens for people and tools (Grafana, scripts), with a role each. Admin only."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from controlplane.api.deps import ADMIN, Principal
from controlplane.clock import utcnow
from controlplane.ops import tokens
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
    row, token = tokens.create_token(
        session,
        token_in.name,
        token_in.role,
        actor=f"{admin.kind}:{admin.name}",
        created_by=admin.name,
        now=utcnow(),
    )
    return TokenCreated(id=row.id, name=row.name, role=row.role, token=token)


@router.delete("/{token_id}", status_code=204, summary="Revoke an API token")
def revoke_token(
    token_id: uuid.UUID, admin: Principal = Depends(ADMIN), session: Session = DB_SESSION
) -> None:
    tokens.revoke_token(session, token_id, actor=f"{admin.kind}:{admin.name}", now=utcnow())
