"""Versioned settings documents with kept history. Session first, never commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.errors import Conflict, NotFound
from controlplane.store.models import InfrastructureSetting, SettingHistory


def get_setting(session: Session, *, setting_type: str) -> InfrastructureSetting:
    row = session.scalars(
        select(InfrastructureSetting).where(InfrastructureSetting.setting_type == setting_type)
    ).first()
    if row is None:
        raise NotFound(f"no setting {setting_type!r} yet: PUT it with version 0 to create it")
    return row


def put_setting(
    session: Session,
    *,
    setting_type: str,
    value: dict[str, Any],
    expected_version: int,
    updated_by: str,
    now: datetime,
) -> InfrastructureSetting:
    """Replace the document if it is still at ``expected_version`` (0 = create)."""
    row = session.scalars(
        select(InfrastructureSetting)
        .where(InfrastructureSetting.setting_type == setting_type)
        .with_for_update()
    ).first()
    current = row.version if row is not None else 0
    if current != expected_version:
        raise Conflict(
            f"{setting_type!r} is at version {current}, not {expected_version}: "
            "GET it, apply your change to that version, and PUT again"
        )
    if row is None:
        row = InfrastructureSetting(setting_type=setting_type, version=0)
        session.add(row)
    row.value = value
    row.version = current + 1
    row.updated_at = now
    row.updated_by = updated_by
    session.add(
        SettingHistory(
            setting_type=setting_type,
            version=row.version,
            value=value,
            updated_at=now,
            updated_by=updated_by,
        )
    )
    session.flush()
    return row


def setting_history(session: Session, *, setting_type: str, limit: int = 50) -> list[SettingHistory]:
    return list(
        session.scalars(
            select(SettingHistory)
            .where(SettingHistory.setting_type == setting_type)
            .order_by(SettingHistory.version.desc())
            .limit(limit)
        )
    )
