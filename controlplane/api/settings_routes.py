"""GET/PUT /api/v1/settings/{setting_type}: versioned documents with history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.api.deps import ADMIN, DB_SESSION, Principal
from controlplane.clock import utcnow
from controlplane.errors import Conflict
from controlplane.ops.settings import check_value
from controlplane.schemas.ingest import UtcDatetime
from controlplane.store.settings_store import get_setting, put_setting, setting_history

router = APIRouter(prefix="/settings", tags=["settings"])

# Credentials kept in the same table; never served or replaced over the API.
RESERVED_PREFIXES = ("auth.", "console.")
SettingType = Path(min_length=1, max_length=50, pattern=r"^[a-z0-9_.\-]+$")


class SettingOut(BaseModel):
    setting_type: str
    version: int
    value: dict[str, Any] | None
    updated_at: UtcDatetime
    updated_by: str | None


class SettingPut(BaseModel):
    value: dict[str, Any]
    version: int = Field(ge=0, description="The version you read (0 to create); 409 if stale")


def _guard(setting_type: str) -> None:
    if setting_type.startswith(RESERVED_PREFIXES):
        raise HTTPException(403, f"{setting_type!r} is reserved for credentials")
    if setting_type.startswith("policy."):
        raise HTTPException(403, f"{setting_type!r} is edited through /api/v1/rules, which validates it")


# Reading is admin-only, like the console's Settings page: a document may hold a secret
# (a webhook password, a backend credential), and a viewer must not read it here either.
@router.get("/{setting_type}", response_model=SettingOut, dependencies=[Depends(ADMIN)])
def read_setting(setting_type: str = SettingType, session: Session = DB_SESSION) -> SettingOut:
    _guard(setting_type)
    return SettingOut.model_validate(get_setting(session, setting_type=setting_type), from_attributes=True)


@router.put("/{setting_type}", response_model=SettingOut)
def replace_setting(
    setting_in: SettingPut,
    setting_type: str = SettingType,
    principal: Principal = Depends(ADMIN),
    session: Session = DB_SESSION,
) -> SettingOut:
    _guard(setting_type)
    check_value(setting_type, setting_in.value)
    try:
        row = put_setting(
            session,
            setting_type=setting_type,
            value=setting_in.value,
            expected_version=setting_in.version,
            updated_by=principal.name,
            now=utcnow(),
        )
    except IntegrityError:
        raise Conflict(f"{setting_type!r} was written concurrently: GET it and retry") from None
    audit.record(session, actor=f"{principal.kind}:{principal.name}", action="setting.replace",
                 target=setting_type, details={"version": row.version})  # fmt: skip
    return SettingOut.model_validate(row, from_attributes=True)


@router.get(
    "/{setting_type}/history",
    response_model=list[SettingOut],
    dependencies=[Depends(ADMIN)],
)
def read_history(setting_type: str = SettingType, session: Session = DB_SESSION) -> list[SettingOut]:
    _guard(setting_type)
    return [
        SettingOut.model_validate(h, from_attributes=True)
        for h in setting_history(session, setting_type=setting_type)
    ]
