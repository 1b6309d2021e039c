"""GET/PUT /api/v1/settings/{setting_type}: versioned documents with history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from controlplane.api.deps import ADMIN, Principal
from controlplane.clock import utcnow
from controlplane.ops.settings import SETTING_TYPE, check_type
from controlplane.ops.settings import replace_setting as replace
from controlplane.schemas.ingest import UtcDatetime
from controlplane.store.settings_store import get_setting, setting_history
from controlplane.web import DB_SESSION

router = APIRouter(prefix="/settings", tags=["settings"])

SettingType = Path(min_length=1, max_length=50, pattern=SETTING_TYPE.pattern)


class SettingOut(BaseModel):
    setting_type: str
    version: int
    value: dict[str, Any] | None
    updated_at: UtcDatetime
    updated_by: str | None


class SettingPut(BaseModel):
    value: dict[str, Any]
    version: int = Field(ge=0, description="The version you read (0 to create); 409 if stale")


# Reading is admin-only, like the console's Settings page: a document may hold a secret
# (a webhook password, a backend credential), and a viewer must not read it here either.
@router.get("/{setting_type}", response_model=SettingOut, dependencies=[Depends(ADMIN)])
def read_setting(setting_type: str = SettingType, session: Session = DB_SESSION) -> SettingOut:
    check_type(setting_type)
    return SettingOut.model_validate(get_setting(session, setting_type=setting_type), from_attributes=True)


@router.put("/{setting_type}", response_model=SettingOut)
def replace_setting(
    setting_in: SettingPut,
    setting_type: str = SettingType,
    principal: Principal = Depends(ADMIN),
    session: Session = DB_SESSION,
) -> SettingOut:
    row = replace(
        session,
        setting_type=setting_type,
        value=setting_in.value,
        expected_version=setting_in.version,
        actor=f"{principal.kind}:{principal.name}",
        updated_by=principal.name,
        now=utcnow(),
    )
    return SettingOut.model_validate(row, from_attributes=True)


@router.get(
    "/{setting_type}/history",
    response_model=list[SettingOut],
    dependencies=[Depends(ADMIN)],
)
def read_history(setting_type: str = SettingType, session: Session = DB_SESSION) -> list[SettingOut]:
    check_type(setting_type)
    return [
        SettingOut.model_validate(h, from_attributes=True)
        for h in setting_history(session, setting_type=setting_type)
    ]
