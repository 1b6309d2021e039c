"""Task schedules kept in the store (``task_schedules``): the use cases behind
/api/v1/tasks/schedules and the console's Schedules page, and the timing rules `coreplane
beat` fires them by (controlplane/tasks/beat.py).

Three kinds: ``interval`` (every ``every_s`` seconds, at least 1), ``crontab`` ("m h dom
mon dow", UTC, Celery's crontab: day of month AND day of week must both match) and
``once`` (at ``run_at``; disabled after it fires). A schedule is checked like a submit
(controlplane/tasks/submit.py): a task the app's registry knows, JSON arguments within
its caps, a declared queue, a priority within that queue's x-max-priority. Every write
bumps the row's version (a stale one is a Conflict) and leaves an audit row; a firing
does neither (beat claims it by the due time, see ``claim``). Session first, never commits.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from celery import Celery
from celery.schedules import ParseException, crontab
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.errors import Conflict, NotFound, Rejected, TooLarge
from controlplane.schemas.ingest import utc_naive
from controlplane.settings import TasksSettings
from controlplane.store.models import TaskSchedule
from controlplane.tasks import submit

KINDS = ("interval", "crontab", "once")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$")
MIN_EVERY_S = 1.0
MAX_EVERY_S = 366 * 86400.0
MAX_RUN_AT_AHEAD = timedelta(days=3660)
RUN_AT_SLACK = timedelta(seconds=60)  # a one-off "now" typed a few seconds late still counts
MAX_SCHEDULES = 1000  # rows beat reads every tick: a cap keeps that look cheap
MAX_CRONTAB = 100
CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week")


@dataclass(frozen=True)
class ScheduleSpec:
    """What a person sets on a schedule (the rest of the row is beat's bookkeeping)."""

    task: str
    kind: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    every_s: float | None = None
    crontab: str | None = None
    run_at: datetime | None = None  # naive UTC, as the store keeps it
    queue: str | None = None
    priority: int | None = None
    enabled: bool = True


def celery_for(state: Any) -> Celery:
    """The serving process's Celery app (the FastAPI app's ``state.task_runtime``, with the
    application's tasks imported): what a schedule's task is checked against."""
    runtime = getattr(state, "task_runtime", None)
    if runtime is None:
        raise Rejected(
            "tasks are not set up on this control plane: no Celery broker (COREPLANE_RABBITMQ__URL)"
        )
    return runtime.app


def kind_of(kind: str | None, *, every_s: Any, crontab: Any, run_at: Any) -> str:
    """The kind given, else the one its timing field names (exactly one of every_s, crontab,
    run_at)."""
    if kind:
        return kind
    given = [
        k for k, v in (("interval", every_s), ("crontab", crontab), ("once", run_at)) if v not in (None, "")
    ]
    if len(given) != 1:
        raise _bad("kind", "give kind, or exactly one of every_s (interval), crontab or run_at (once)")
    return given[0]


def _bad(name: str, why: str) -> Rejected:
    return Rejected.field(f"{name}: {why}", name, why, kind="body")


def parse_crontab(text: str) -> crontab:
    """Celery's crontab of five fields "m h dom mon dow" (UTC); Rejected naming the field."""
    if not isinstance(text, str) or len(text) > MAX_CRONTAB:
        raise _bad("crontab", f"must be text of at most {MAX_CRONTAB} characters")
    parts = text.split()
    if len(parts) != 5:
        raise _bad(
            "crontab", f"needs 5 fields ({', '.join(CRON_FIELDS)}), got {len(parts)}: e.g. '*/15 * * * *'"
        )
    for name, part in zip(CRON_FIELDS, parts, strict=True):
        try:  # each field alone first, so the message says which one is wrong
            _cron(**{_CRON_KEYS[name]: part})
        except (ValueError, ParseException, TypeError) as exc:
            raise _bad("crontab", f"the {name} field {part!r} is not valid ({exc})") from None
    try:
        return _cron(**dict(zip(_CRON_KEYS.values(), parts, strict=True)))
    except (ValueError, ParseException, TypeError) as exc:  # e.g. the 31st of February
        raise _bad("crontab", str(exc)) from None


_CRON_KEYS = {"minute": "minute", "hour": "hour", "day of month": "day_of_month", "month": "month_of_year",
              "day of week": "day_of_week"}  # fmt: skip


def _cron(**fields: str) -> crontab:
    return crontab(**fields)


def next_run(spec: ScheduleSpec, *, after: datetime) -> datetime | None:
    """When ``spec`` fires next, strictly after ``after`` (naive UTC); None for a one-off
    (it fires at its run_at: see ``first_run``)."""
    if spec.kind == "interval":
        assert spec.every_s is not None
        return after + timedelta(seconds=spec.every_s)
    if spec.kind == "crontab":
        assert spec.crontab is not None
        start, delta, _ = parse_crontab(spec.crontab).remaining_delta(after.replace(tzinfo=UTC), tz=UTC)
        return utc_naive(start + delta)
    return None


def first_run(spec: ScheduleSpec, *, now: datetime) -> datetime | None:
    """The due time of a schedule just created, changed or enabled (None when disabled)."""
    if not spec.enabled:
        return None
    return spec.run_at if spec.kind == "once" else next_run(spec, after=now)


def following(spec: ScheduleSpec, *, due: datetime, now: datetime) -> datetime | None:
    """The due time after a firing at ``due`` (beat ran it at ``now``): an interval keeps its
    phase and skips the times beat was away for (one firing catches up, not a burst), a
    crontab's next time after now; a one-off has none."""
    if spec.kind == "interval":
        assert spec.every_s is not None
        missed = max(0, math.floor((now - due).total_seconds() / spec.every_s))
        return due + timedelta(seconds=spec.every_s * (missed + 1))
    if spec.kind == "crontab":
        return next_run(spec, after=max(due, now))
    return None


def validate(spec: ScheduleSpec, *, app: Celery, tasks: TasksSettings, now: datetime) -> ScheduleSpec:
    """``spec`` checked and normalised (only its kind's timing field kept, run_at naive UTC);
    Rejected (or TooLarge) naming the first wrong field."""
    submit.check_name(app, spec.task, field="task")
    submit.check_arguments(spec.args, spec.kwargs)
    submit.route(tasks, spec.task, spec.queue, spec.priority)
    if spec.kind not in KINDS:
        raise _bad("kind", f"must be one of {', '.join(KINDS)}")
    if not isinstance(spec.enabled, bool):
        raise _bad("enabled", "must be true or false")
    timing: dict[str, Any] = {"every_s": None, "crontab": None, "run_at": None}
    if spec.kind == "interval":
        every = spec.every_s
        if isinstance(every, bool) or not isinstance(every, (int, float)) or not math.isfinite(every):
            raise _bad("every_s", "an interval schedule needs every_s, in seconds")
        if not MIN_EVERY_S <= every <= MAX_EVERY_S:
            raise _bad("every_s", f"must be from {MIN_EVERY_S:g} to {MAX_EVERY_S:g} seconds, not {every:g}")
        timing["every_s"] = float(every)
    elif spec.kind == "crontab":
        if not spec.crontab:
            raise _bad("crontab", "a crontab schedule needs crontab, e.g. '0 3 * * *' (UTC)")
        parse_crontab(spec.crontab)
        timing["crontab"] = " ".join(spec.crontab.split())
    else:
        if not isinstance(spec.run_at, datetime):
            raise _bad("run_at", "a one-off schedule needs run_at, an ISO 8601 time (UTC unless it says)")
        run_at = utc_naive(spec.run_at)
        if spec.enabled and run_at < now - RUN_AT_SLACK:
            raise _bad("run_at", f"{run_at:%Y-%m-%d %H:%M:%S} UTC is in the past: pick a later time")
        if run_at > now + MAX_RUN_AT_AHEAD:
            raise _bad("run_at", f"is more than {MAX_RUN_AT_AHEAD.days} days ahead")
        timing["run_at"] = run_at
    return replace(spec, args=list(spec.args), **timing)


def check_schedule_name(name: str) -> None:
    if not isinstance(name, str) or not NAME.match(name):
        raise _bad(
            "name",
            "1 to 100 characters: letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
        )


def spec_of(row: TaskSchedule) -> ScheduleSpec:
    """The spec a stored row holds."""
    return ScheduleSpec(task=row.task, kind=row.kind, args=list(row.args or []),
                        kwargs=dict(row.kwargs or {}), every_s=row.every_s, crontab=row.crontab,
                        run_at=row.run_at, queue=row.queue, priority=row.priority,
                        enabled=row.enabled)  # fmt: skip


def _timing(spec: ScheduleSpec) -> tuple:
    return spec.kind, spec.every_s, spec.crontab, spec.run_at, spec.enabled


def _audited(spec: ScheduleSpec) -> dict[str, Any]:
    """What changed, for the audit log: argument values stay out (they may hold secrets)."""
    details = asdict(spec)
    details["run_at"] = spec.run_at.isoformat() + "Z" if spec.run_at else None
    details["args"], details["kwargs"] = len(spec.args), sorted(spec.kwargs)
    return details


def list_schedules(session: Session, *, limit: int = MAX_SCHEDULES) -> list[TaskSchedule]:
    model = TaskSchedule
    return list(session.scalars(select(model).order_by(model.name).limit(limit)))


def get(session: Session, name: str) -> TaskSchedule:
    model = TaskSchedule
    row = session.scalars(select(model).where(model.name == name)).first()
    if row is None:
        raise NotFound(f"no task schedule named {name!r}")
    return row


def create(
    session: Session, name: str, spec: ScheduleSpec, *, app: Celery, tasks: TasksSettings, actor: str,
    now: datetime, client: str | None = None,
) -> TaskSchedule:  # fmt: skip
    """A new schedule at version 1; Conflict if the name is taken; audited."""
    check_schedule_name(name)
    spec = validate(spec, app=app, tasks=tasks, now=now)
    model = TaskSchedule
    if (session.scalar(select(func.count()).select_from(model)) or 0) >= MAX_SCHEDULES:
        raise TooLarge(f"there are {MAX_SCHEDULES} schedules already, the most beat reads: delete some first")
    if session.scalars(select(model.id).where(model.name == name)).first() is not None:
        raise Conflict(f"a schedule named {name!r} exists: PUT /api/v1/tasks/schedules/{name} to change it")
    row = model(name=name, **asdict(spec), next_run_at=first_run(spec, now=now), total_runs=0, version=1,
                updated_at=now, updated_by=actor)  # fmt: skip
    session.add(row)
    try:
        with session.begin_nested():  # two creates of one name at the same moment: the loser conflicts
            session.flush()
    except IntegrityError:
        raise Conflict(f"a schedule named {name!r} was created at the same moment") from None
    audit.record(session, actor=actor, action="task_schedule.create", target=name,
                 details={"version": 1, **_audited(spec)}, client=client)  # fmt: skip
    return row


def _expect(row: TaskSchedule, expected_version: int | None) -> None:
    if expected_version is not None and row.version != expected_version:
        raise Conflict(
            f"schedule {row.name!r} is at version {row.version}, not {expected_version}: someone changed it "
            f"(last {row.updated_by}); read it again and redo your change"
        )


def replace_schedule(
    session: Session, name: str, spec: ScheduleSpec, *, expected_version: int, app: Celery,
    tasks: TasksSettings, actor: str, now: datetime, client: str | None = None,
) -> TaskSchedule:  # fmt: skip
    """Replace what ``name`` runs and when, if it is still at ``expected_version``; its next
    run is worked out again when its timing (or enabled) changed. Audited."""
    row = get(session, name)
    _expect(row, expected_version)
    spec = validate(spec, app=app, tasks=tasks, now=now)
    retimed = _timing(spec) != _timing(spec_of(row))
    return _write(session, row, spec, retimed=retimed, action="task_schedule.replace", actor=actor, now=now,
                  client=client)  # fmt: skip


def set_enabled(
    session: Session, name: str, enabled: bool, *, expected_version: int | None, app: Celery,
    tasks: TasksSettings, actor: str, now: datetime, client: str | None = None,
) -> TaskSchedule:  # fmt: skip
    """Enable or disable ``name`` (checked again when enabling: a one-off's time may have passed)."""
    row = get(session, name)
    _expect(row, expected_version)
    spec = replace(spec_of(row), enabled=enabled)
    if enabled:
        spec = validate(spec, app=app, tasks=tasks, now=now)
    return _write(session, row, spec, retimed=enabled != row.enabled,
                  action="task_schedule.enable" if enabled else "task_schedule.disable", actor=actor, now=now,
                  client=client)  # fmt: skip


def _write(session: Session, row: TaskSchedule, spec: ScheduleSpec, *, retimed: bool, action: str, actor: str,
           now: datetime, client: str | None) -> TaskSchedule:  # fmt: skip
    for key, value in asdict(spec).items():
        setattr(row, key, value)
    if retimed:
        row.next_run_at = first_run(spec, now=now)
    row.version, row.updated_at, row.updated_by = row.version + 1, now, actor
    session.flush()
    audit.record(session, actor=actor, action=action, target=row.name,
                 details={"version": row.version, **_audited(spec)}, client=client)  # fmt: skip
    return row


def delete(
    session: Session, name: str, *, expected_version: int | None, actor: str, now: datetime,
    client: str | None = None,
) -> None:  # fmt: skip
    """Remove ``name`` (if still at ``expected_version``, when given); audited."""
    row = get(session, name)
    _expect(row, expected_version)
    session.delete(row)
    session.flush()
    audit.record(session, actor=actor, action="task_schedule.delete", target=name,
                 details={"version": row.version, **_audited(spec_of(row))}, client=client)  # fmt: skip


# Beat's side: what is due, and a firing claimed by compare-and-set.


def due(session: Session, *, now: datetime, limit: int = MAX_SCHEDULES) -> list[TaskSchedule]:
    """Enabled schedules whose due time has come, oldest first."""
    model = TaskSchedule
    query = select(model).where(
        model.enabled.is_(True), model.next_run_at.is_not(None), model.next_run_at <= now
    )
    return list(session.scalars(query.order_by(model.next_run_at).limit(limit)))


def next_due(session: Session) -> datetime | None:
    model = TaskSchedule
    return session.scalar(select(func.min(model.next_run_at)).where(model.enabled.is_(True)))


@dataclass(frozen=True)
class Firing:
    """One due time of one schedule, claimed: what beat sends, and how to give it back."""

    schedule_id: Any
    name: str
    spec: ScheduleSpec
    due: datetime
    next_run_at: datetime | None
    previous_run_at: datetime | None
    version: int


def claim(session: Session, row: TaskSchedule, *, now: datetime) -> Firing | None:
    """Take ``row``'s current due time for this beat: one UPDATE that matches only while the
    row still has that due time and version, so of two beats (or a beat and an edit) racing
    for it, one wins and the other changes nothing (None)."""
    spec, model, due_at = spec_of(row), TaskSchedule, row.next_run_at
    if due_at is None or not row.enabled:
        return None
    later = following(spec, due=due_at, now=now)
    taken = cast("CursorResult[Any]", session.execute(
        update(model)
        .where(
            model.id == row.id,
            model.enabled.is_(True),
            model.next_run_at == row.next_run_at,
            model.version == row.version,
        )
        .values(
            next_run_at=later, last_run_at=now, total_runs=model.total_runs + 1, enabled=spec.kind != "once"
        )
        .execution_options(synchronize_session=False)
    ))  # fmt: skip
    if taken.rowcount != 1:
        return None
    return Firing(row.id, row.name, spec, due_at, later, row.last_run_at, row.version)


def give_back(session: Session, firing: Firing) -> bool:
    """Undo a claim whose task could not be sent (the broker away), if nothing changed the
    row since: its due time comes round again on the next tick."""
    model = TaskSchedule
    unchanged = (
        model.next_run_at.is_(None) if firing.next_run_at is None else model.next_run_at == firing.next_run_at
    )
    undone = cast("CursorResult[Any]", session.execute(
        update(model)
        .where(model.id == firing.schedule_id, model.version == firing.version, unchanged)
        .values(next_run_at=firing.due, last_run_at=firing.previous_run_at, total_runs=model.total_runs - 1,
                enabled=True)
        .execution_options(synchronize_session=False)
    ))  # fmt: skip
    return undone.rowcount == 1
