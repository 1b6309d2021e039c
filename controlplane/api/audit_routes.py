"""The audit log over HTTP (admins): who changed what, newest first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.api.deps import ADMIN
from controlplane.store.models import AuditEntry
from controlplane.web import DB_SESSION

router = APIRouter(tags=["audit"])


@router.get("/audit", dependencies=[Depends(ADMIN)], summary="The audit log, newest first")
def read_audit(
    session: Session = DB_SESSION,
    actor: str | None = None,
    action: str | None = Query(None, description="e.g. user.create, rules.replace, login.failed"),
    limit: int = Query(100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    query = select(AuditEntry).order_by(AuditEntry.at.desc()).limit(limit)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action == action)
    return [
        {"at": e.at.isoformat() + "Z", "actor": e.actor, "action": e.action, "target": e.target,
         "details": e.details, "client": e.client}
        for e in session.scalars(query)
    ]  # fmt: skip
