"""Task schedules: /api/v1/tasks/schedules (list, create) and /api/v1/tasks/schedules/{name}
(read, replace with the version read, delete). `coreplane beat` reads them each tick."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from controlplane.api.deps import OPERATOR, VIEWER, Principal
from controlplane.clock import utcnow
from controlplane.schemas.ingest import Text, UtcDatetime
from controlplane.store.models import TaskSchedule
from controlplane.tasks import schedules
from controlplane.web import DB_SESSION, READ_SESSION, client_address

router = APIRouter(prefix="/tasks/schedules", tags=["tasks"])

ScheduleName = Path(min_length=1, max_length=100, pattern=schedules.NAME.pattern)


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Text = Field(min_length=1, max_length=200, description="A registered task name.")
    kind: Literal["interval", "crontab", "once"] | None = Field(
        None, description="By default the kind its timing field names."
    )
    every_s: float | None = Field(None, description="interval: seconds between runs (at least 1).")
    crontab: Text | None = Field(None, max_length=100, description='crontab: "m h dom mon dow", UTC.')
    run_at: datetime | None = Field(None, description="once: when (ISO 8601; UTC unless it says).")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    queue: Text | None = Field(None, max_length=200, description="By default the task's route.")
    priority: int | None = Field(None, description="0 to the queue's x-max-priority; by default the task's.")
    enabled: bool = True

    def spec(self) -> schedules.ScheduleSpec:
        kind = schedules.kind_of(self.kind, every_s=self.every_s, crontab=self.crontab, run_at=self.run_at)
        return schedules.ScheduleSpec(**self.model_dump(exclude={"kind", "name", "version"}), kind=kind)


class ScheduleCreate(ScheduleIn):
    name: Text = Field(min_length=1, max_length=100, pattern=schedules.NAME.pattern)


class ScheduleReplace(ScheduleIn):
    version: int = Field(ge=1, description="The version you read; 409 if someone changed it since.")


# The pydantic mypy plugin gives a model without extra="forbid" an __init__(**kwargs), which
# a field named kwargs collides with.
class ScheduleOut(BaseModel):  # type: ignore[no-redef]
    name: str
    task: str
    kind: str
    every_s: float | None
    crontab: str | None
    run_at: UtcDatetime | None
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    priority: int | None
    enabled: bool
    next_run_at: UtcDatetime | None
    last_run_at: UtcDatetime | None
    total_runs: int
    version: int
    updated_at: UtcDatetime
    updated_by: str


def _out(row: TaskSchedule) -> ScheduleOut:
    return ScheduleOut.model_validate(row, from_attributes=True)


def _actor(who: Principal) -> str:
    return f"{who.kind}:{who.name}"


@router.get("", response_model=list[ScheduleOut], dependencies=[Depends(VIEWER)])
def list_schedules(session: Session = READ_SESSION) -> list[ScheduleOut]:
    return [_out(row) for row in schedules.list_schedules(session)]


@router.post("", status_code=201, response_model=ScheduleOut)
def create_schedule(
    request: Request,
    schedule_in: ScheduleCreate,
    who: Principal = Depends(OPERATOR),
    session: Session = DB_SESSION,
) -> ScheduleOut:
    app, tasks = schedules.celery_for(request.app.state), request.app.state.settings.tasks
    row = schedules.create(session, schedule_in.name, schedule_in.spec(), app=app, tasks=tasks,
                           actor=_actor(who), now=utcnow(), client=client_address(request))  # fmt: skip
    return _out(row)


@router.get("/{name}", response_model=ScheduleOut, dependencies=[Depends(VIEWER)])
def read_schedule(name: str = ScheduleName, session: Session = READ_SESSION) -> ScheduleOut:
    return _out(schedules.get(session, name))


@router.put("/{name}", response_model=ScheduleOut)
def replace_schedule(
    request: Request,
    schedule_in: ScheduleReplace,
    name: str = ScheduleName,
    who: Principal = Depends(OPERATOR),
    session: Session = DB_SESSION,
) -> ScheduleOut:
    app, tasks = schedules.celery_for(request.app.state), request.app.state.settings.tasks
    row = schedules.replace_schedule(
        session, name, schedule_in.spec(), expected_version=schedule_in.version, app=app, tasks=tasks,
        actor=_actor(who), now=utcnow(), client=client_address(request),
    )  # fmt: skip
    return _out(row)


@router.delete("/{name}", status_code=204)
def delete_schedule(
    request: Request,
    name: str = ScheduleName,
    version: int | None = Query(
        None, ge=1, description="The version you read; 409 if someone changed it since."
    ),
    who: Principal = Depends(OPERATOR),
    session: Session = DB_SESSION,
) -> Response:
    schedules.delete(session, name, expected_version=version, actor=_actor(who), now=utcnow(),
                     client=client_address(request))  # fmt: skip
    return Response(status_code=204)
