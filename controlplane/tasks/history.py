"""Task history: Celery's task events folded into one ``task_runs`` row per task id,
read back with filters, and pruned by age and count. Session first, never commits.

Events may come late, twice, or out of order (one task's events pass through several
processes, and several control planes read the events queue as competing consumers), so
folding is order-independent: a state is taken only from an event newer than the one
that set the current state, so a finished task never moves back to STARTED, while a
replay of it later (same task id) does start it again. Every timestamp is the event's
own (Celery's ``timestamp``, epoch seconds), never the time we heard of it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from controlplane import notify
from controlplane.errors import Rejected
from controlplane.schemas.ingest import utc_naive
from controlplane.settings import TasksSettings
from controlplane.store.models import TaskRun
from controlplane.store.writes import EventRow, write_events
from controlplane.tasks import topology

# Caps on what one event may put in the store: Celery's reprs and tracebacks are unbounded.
ARGS_MAX, RESULT_MAX, EXCEPTION_MAX, TRACEBACK_MAX = 4096, 4096, 4096, 16384
NAME_MAX, ID_MAX = 200, 155
FINISHED = ("SUCCESS", "FAILURE", "REVOKED", "REJECTED")
STATES = ("PENDING", "RECEIVED", "STARTED", "RETRY", *FINISHED)
# Event type -> (state, rank). The rank orders two events with the same timestamp.
EVENT_STATES = {
    "task-sent": ("PENDING", 0),
    "task-received": ("RECEIVED", 1),
    "task-started": ("STARTED", 2),
    "task-retried": ("RETRY", 3),
    "task-succeeded": ("SUCCESS", 4),
    "task-failed": ("FAILURE", 4),
    "task-revoked": ("REVOKED", 4),
    "task-rejected": ("REJECTED", 4),
}
_RANK = {state: rank for state, rank in EVENT_STATES.values()}
# A finished state set by an event with an earlier timestamp still wins over a running
# one this close to it: task-sent comes from the client's clock, the rest from the worker's.
CLOCK_SKEW = timedelta(seconds=60)
_NEVER = datetime(1970, 1, 1)
PRUNE_BATCH = 5000
PRUNE_MAX_PER_RUN = 200_000
MAX_LIST = 500
REDACTED = "'***'"


def _cap(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\x00", "")
    return text if len(text) <= limit else text[: limit - 15] + "... (truncated)"


def _secret(key: Any, keys: Sequence[str]) -> bool:
    return isinstance(key, str) and any(k.lower() in key.lower() for k in keys)


def _scrub(value: Any, keys: Sequence[str]) -> Any:
    if isinstance(value, dict):
        return {k: "***" if _secret(k, keys) else _scrub(v, keys) for k, v in value.items()}
    if isinstance(value, list | tuple):
        scrubbed = [_scrub(v, keys) for v in value]
        return tuple(scrubbed) if isinstance(value, tuple) else scrubbed
    return value


# A quoted key whose name matches, then its value: a quoted string (escapes included, or
# cut off by Celery's truncation) or anything up to the next comma or closing brace.
_QUOTED_VALUE = r"""(?:'(?:[^'\\]|\\.)*(?:'|$)|"(?:[^"\\]|\\.)*(?:"|$))"""


def _pattern(keys: Sequence[str]) -> re.Pattern[str]:
    names = "|".join(re.escape(k) for k in keys)
    key = rf"""(?P<q>['"])[^'"]*?(?:{names})[^'"]*?(?P=q)"""
    return re.compile(rf"({key}\s*:\s*)(?:{_QUOTED_VALUE}|[^,}}\]]*)", re.IGNORECASE)


def redact_kwargs(text: str | None, keys: Sequence[str]) -> str | None:
    """A Celery args/kwargs repr with the value of every key matching ``keys`` (a
    case-insensitive substring) replaced by '***', at any depth. A repr Python can read
    back is rewritten from its value; anything else (objects, Celery's truncated reprs)
    by a pattern over the text, so a secret is withheld even from a repr we cannot parse."""
    if not text or not keys:
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return _pattern(keys).sub(lambda m: m.group(1) + REDACTED, text)
    return repr(_scrub(value, keys))


def _args(event: dict, tasks: TasksSettings) -> str | None:
    text = event.get("args")
    if text is None:
        return None
    if tasks.redact_args:
        try:
            count = len(ast.literal_eval(text))
            return f"({count} argument(s) withheld)"
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return "(arguments withheld)"
    return _cap(redact_kwargs(text, tasks.redact), ARGS_MAX)


def at(event: dict) -> datetime:
    """The event's own time (Celery's epoch ``timestamp``) as the store's naive UTC."""
    return datetime.fromtimestamp(float(event["timestamp"]), UTC).replace(tzinfo=None)


def _task_events(events: Iterable[dict]) -> list[dict]:
    """Task events we can place: a known type, a task id and a timestamp."""
    found = []
    for event in events:
        if not isinstance(event, dict) or event.get("type") not in EVENT_STATES:
            continue
        if not isinstance(event.get("uuid"), str) or not event["uuid"] or len(event["uuid"]) > ID_MAX:
            continue
        try:
            at(event)
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            continue
        found.append(event)
    return found


def _lock_rows(session: Session, task_ids: list[str]) -> dict[str, SimpleNamespace]:
    """The rows of ``task_ids`` as plain values, created empty where missing, locked
    (PostgreSQL) so two control planes folding events of one task take turns. Plain values,
    not ORM objects: the batch is written back in one executemany (``_write_back``), not a
    unit-of-work flush row by row."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = TaskRun.__table__
    rows: dict[str, SimpleNamespace] = {}
    for start in range(0, len(task_ids), 500):
        chunk = task_ids[start : start + 500]
        session.execute(
            insert(TaskRun)
            .values([{"task_id": t, "state": "PENDING", "updated_at": _NEVER, "retries": 0} for t in chunk])
            .on_conflict_do_nothing(index_elements=["task_id"])
        )
        query = select(table).where(table.c.task_id.in_(chunk))
        if dialect == "postgresql":
            query = query.with_for_update()
        rows.update((r.task_id, SimpleNamespace(**r._mapping)) for r in session.execute(query))
    return rows


def _write_back(session: Session, runs: Iterable[SimpleNamespace]) -> None:
    """Every row of the batch in one executemany (SQLAlchemy's bulk UPDATE by primary key)."""
    columns = [c.name for c in TaskRun.__table__.columns]
    params = [{c: getattr(run, c) for c in columns} for run in runs]
    if params:
        session.execute(update(TaskRun), params)


def _takes_state(run: SimpleNamespace, state: str, when: datetime) -> bool:
    """Whether an event moving ``run`` to ``state`` at ``when`` is newer than the one that
    set its current state (``updated_at``). A send never moves a task back from where a
    worker put it: the publisher stamps task-sent after publishing, so a fast task's
    task-succeeded can be older than its task-sent (a replay's new attempt shows once a
    worker receives it)."""
    if state == "PENDING" and run.state != "PENDING":
        return False
    if state in FINISHED and run.state not in FINISHED and run.updated_at != _NEVER:
        return when >= run.updated_at - CLOCK_SKEW
    return (when, _RANK[state]) > (run.updated_at, _RANK.get(run.state, -1))


def _fill(run: SimpleNamespace, event: dict, tasks: TasksSettings, when: datetime) -> None:
    """What an event says besides the state: names, arguments, times, outcome."""
    kind = event["type"]
    if event.get("name") and not run.name:
        run.name = _cap(event["name"], NAME_MAX)
    if kind == "task-sent" and event.get("queue"):
        run.queue = _cap(event["queue"], NAME_MAX)
    if "args" in event and (kind == "task-received" or run.args is None):
        run.args = _args(event, tasks)
    if "kwargs" in event and (kind == "task-received" or run.kwargs is None):
        run.kwargs = _cap(redact_kwargs(event.get("kwargs"), tasks.redact), ARGS_MAX)
    for column in ("root_id", "parent_id"):
        if isinstance(event.get(column), str) and getattr(run, column) is None:
            setattr(run, column, event[column][:ID_MAX])
    if isinstance(event.get("retries"), int):
        run.retries = max(run.retries or 0, event["retries"])
    if kind != "task-sent" and event.get("hostname"):
        run.worker = _cap(event["hostname"], NAME_MAX)
    if kind == "task-sent":
        run.sent_at = min(run.sent_at or when, when)
        due = max(when, _eta(event) or when)
        run.due_at = max(run.due_at or due, due)  # the latest attempt's
    elif kind == "task-received":
        run.received_at = max(run.received_at or when, when)  # the latest attempt's
    elif kind == "task-started":
        run.started_at = max(run.started_at or when, when)
    # Wait is time spent queued: from when the latest attempt was due to its start. A worker
    # receives a task only once it has a free process (prefetch 1, acks_late), so received ->
    # started is about 0 and says nothing; received is the fallback when no task-sent
    # event was heard (a publisher without task_send_sent_event).
    since = run.due_at or run.received_at
    if run.started_at and since and run.started_at >= since:
        run.wait_s = (run.started_at - since).total_seconds()


def _eta(event: dict) -> datetime | None:
    """A task-sent event's ETA (ISO 8601, Celery's own), as naive UTC; None when absent or odd."""
    text = event.get("eta")
    if not isinstance(text, str):
        return None
    try:
        return utc_naive(datetime.fromisoformat(text))
    except ValueError:  # not a time, or its UTC time past year 9999
        return None


def _finish(run: SimpleNamespace, event: dict, when: datetime) -> None:
    kind = event["type"]
    run.finished_at = when
    if kind == "task-succeeded":
        run.result = _cap(event.get("result"), RESULT_MAX)
        run.exception = run.traceback = None
    if kind in ("task-failed", "task-retried"):
        run.exception = _cap(event.get("exception"), EXCEPTION_MAX)
        run.traceback = _cap(event.get("traceback"), TRACEBACK_MAX)
    if isinstance(event.get("runtime"), int | float):
        run.runtime_s = float(event["runtime"])
    elif run.started_at and when >= run.started_at:
        run.runtime_s = (when - run.started_at).total_seconds()


def _apply(run: SimpleNamespace, event: dict, tasks: TasksSettings) -> None:
    when = at(event)
    state, _rank = EVENT_STATES[event["type"]]
    _fill(run, event, tasks, when)
    if not _takes_state(run, state, when):
        return
    run.state, run.updated_at = state, when
    if state in FINISHED:
        _finish(run, event, when)
    elif state == "RETRY":
        run.exception = _cap(event.get("exception"), EXCEPTION_MAX)
        run.traceback = _cap(event.get("traceback"), TRACEBACK_MAX)
        run.finished_at = None
    else:
        run.finished_at = None  # running again: a replay of a finished task


def _problem(run: SimpleNamespace, event: dict) -> EventRow:
    """The infrastructure_events row of a failure or a retry."""
    failed = event["type"] == "task-failed"
    return EventRow(
        event_type="task.failed" if failed else "task.retried",
        service_name="celery",
        timestamp=at(event),
        status="critical" if failed else "warning",
        details={
            "task_id": run.task_id,
            "name": run.name,
            "queue": run.queue,
            "exception": _cap(event.get("exception"), EXCEPTION_MAX),
            "traceback": _cap(event.get("traceback"), TRACEBACK_MAX),
            "retries": run.retries,
            "worker": _cap(event.get("hostname"), NAME_MAX),
        },
    )


def record(session: Session, events: list[dict], *, tasks: TasksSettings, now: datetime) -> int:
    """Fold raw Celery event dicts into task_runs (and failures and retries into
    infrastructure_events); returns how many task events were taken. Announces TASKS (and
    EVENTS) to wake live pages once the caller commits."""
    found = sorted(_task_events(events), key=lambda e: (at(e), EVENT_STATES[e["type"]][1]))
    if not found:
        return 0
    runs = _lock_rows(session, sorted({e["uuid"] for e in found}))
    problems, seen = [], set()
    for event in found:
        run = runs[event["uuid"]]
        duplicate = (event["uuid"], event["type"], event["timestamp"]) in seen
        seen.add((event["uuid"], event["type"], event["timestamp"]))
        already_failed = (
            event["type"] == "task-failed" and run.state == "FAILURE" and run.finished_at == at(event)
        )
        _apply(run, event, tasks)
        if run.name and not run.queue:
            run.queue = topology.queue_for(tasks, run.name)  # where the routes sent it
        if event["type"] in ("task-failed", "task-retried") and not duplicate and not already_failed:
            problems.append(_problem(run, event))
    _write_back(session, runs.values())
    write_events(session, problems)
    notify.announce(session, notify.TASKS)
    if problems:
        notify.announce(session, notify.EVENTS)
    return len(found)


def problem_days(events: Iterable[dict]) -> set[date]:
    """The days of the infrastructure_events rows ``record`` would write (their partitions
    must exist on PostgreSQL before the transaction)."""
    return {at(e).date() for e in _task_events(events) if e["type"] in ("task-failed", "task-retried")}


def _delete_batches(session: Session, where: Any, order: Any, budget: int) -> int:
    deleted = 0
    while deleted < budget:
        ids = list(session.scalars(select(TaskRun.task_id).where(where).order_by(order).limit(PRUNE_BATCH)))
        if not ids:
            break
        session.execute(delete(TaskRun).where(TaskRun.task_id.in_(ids)))
        deleted += len(ids)
        if len(ids) < PRUNE_BATCH:
            break
    return deleted


def prune(session: Session, *, tasks: TasksSettings, now: datetime) -> int:
    """Delete finished runs older than ``history_days``, then the oldest runs beyond
    ``history_max_rows``, in batches (at most PRUNE_MAX_PER_RUN a call: the next call goes
    on). Returns the rows deleted."""
    cutoff = now - timedelta(days=tasks.history_days)
    deleted = _delete_batches(
        session,
        (TaskRun.state.in_(FINISHED)) & (TaskRun.finished_at < cutoff),
        TaskRun.finished_at,
        PRUNE_MAX_PER_RUN,
    )
    excess = (session.scalar(select(func.count()).select_from(TaskRun)) or 0) - tasks.history_max_rows
    while excess > 0 and deleted < PRUNE_MAX_PER_RUN:
        batch = min(excess, PRUNE_BATCH, PRUNE_MAX_PER_RUN - deleted)
        oldest = select(TaskRun.task_id).order_by(TaskRun.updated_at, TaskRun.task_id).limit(batch)
        ids = list(session.scalars(oldest))
        session.execute(delete(TaskRun).where(TaskRun.task_id.in_(ids)))
        deleted += len(ids)
        excess -= len(ids)
    return deleted


def list_runs(
    session: Session,
    *,
    state: str | None = None,
    name: str | None = None,
    queue: str | None = None,
    search: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    before: tuple[datetime, str] | None = None,
) -> list[TaskRun]:
    """Runs newest first (by their last change, ``updated_at``); ``search`` matches each
    word in the task id, name, arguments or exception; ``before`` = (updated_at, task_id)
    of the last row of the previous page. Rejected naming ``state`` when it is not one."""
    if state is not None and state not in STATES:
        raise Rejected.field(f"state must be one of {', '.join(STATES)}, not {state!r}", "state", "unknown")
    r = TaskRun
    where: list[Any] = [r.updated_at > _NEVER]
    for column, value in ((r.state, state), (r.name, name), (r.queue, queue)):
        if value is not None:
            where.append(column == value)
    if since is not None:
        where.append(r.updated_at >= since)
    if until is not None:
        where.append(r.updated_at < until)
    for term in (search or "").split()[:10]:
        where.append(
            or_(*(
                func.lower(column).contains(term.lower(), autoescape=True)
                for column in (r.task_id, r.name, r.args, r.kwargs, r.exception)
            ))
        )  # fmt: skip
    if before is not None:
        where.append(or_(r.updated_at < before[0], (r.updated_at == before[0]) & (r.task_id < before[1])))
    query = select(r).where(*where).order_by(r.updated_at.desc(), r.task_id.desc())
    return list(session.scalars(query.limit(max(1, min(limit, MAX_LIST)))))


def get_run(session: Session, task_id: str) -> TaskRun | None:
    run = session.get(TaskRun, task_id)
    return None if run is None or run.updated_at == _NEVER else run
