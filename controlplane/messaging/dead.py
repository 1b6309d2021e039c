"""Archived dead letters (mq_dead_letters, written by archive.py): list, inspect, discard,
and the two actions an agent carries out for them (target "rabbitmq"):

- ``messaging.replay`` {ids: [...]} or {queue, reason?, since?, limit?}: the plan picks the
  archived rows still dead and sends them in a step (``rabbitmq.publish``, a few MB each)
  to the agent watching the "rabbitmq" service, which publishes each, with confirms, to its
  original exchange and routing key (its queue through the default exchange when that was
  the default one) with its message id and ``x-coreplane-replayed: N``; the rows the agent
  says it published become ``replayed``, audited. A failed step leaves its rows dead.
- ``queue.purge`` {queue}: the agent empties the queue through the management API
  (``rabbitmq.purge``) and says how many messages went.

Discarding needs no broker: the control plane marks the rows ``discarded`` itself,
audited. Functions take the session first and never commit.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.actions import lifecycle
from controlplane.actions.steps import ACTOR, add_step, fail, succeed
from controlplane.catalog.instances import instances_of
from controlplane.errors import NotFound, Rejected, TooLarge
from controlplane.messaging import definition as d
from controlplane.notify import MESSAGING, announce
from controlplane.schemas.ingest import utc_naive
from controlplane.store.models import Action, MqDeadLetter

REPLAY, PURGE = "messaging.replay", "queue.purge"
KINDS = (REPLAY, PURGE)
TARGET = "rabbitmq"  # the catalog service whose agent carries them out
STATES = ("dead", "replayed", "discarded")
REASONS = ("failed", "invalid", "rejected", "expired", "maxlen", "delivery_limit", "unknown")
MAX_LIST = 500  # rows one listing returns
MAX_IDS = 500  # ids one replay or discard names
MAX_SELECT = 1000  # rows a filtered replay or discard takes
MAX_TEXT = 200
MAX_SEARCH_TERMS = 10
STEP_BYTES = 4 * 1024 * 1024  # bodies (base64) in one agent step: a long poll stays small
REPLAYED_HEADER = "x-coreplane-replayed"
# Not sent again: RabbitMQ's record of the deaths (so it describes the next one, should the
# message die again) and coreplane's verdict on the last one. The attempt count goes too:
# a replay is a fresh start, its retries counted from 1.
DROPPED_HEADERS = frozenset(
    {"x-death", "x-first-death-queue", "x-first-death-reason", "x-first-death-exchange",
     "x-last-death-queue", "x-last-death-reason", "x-last-death-exchange",
     d.HEADER_REASON, d.HEADER_ERROR, d.HEADER_ATTEMPT, d.HEADER_FAILED_AT}
)  # fmt: skip
# The properties a replay carries over (expiration was removed by the broker at the death;
# user_id must match the publishing user, which the agent's may not be).
REPLAY_PROPERTIES = ("content_type", "content_encoding", "priority", "correlation_id", "reply_to",
                     "type", "app_id", "timestamp")  # fmt: skip


# -- reading -----------------------------------------------------------------------------


def list_dead(
    session: Session,
    *,
    queue: str | None = None,
    reason: str | None = None,
    state: str | None = "dead",
    search: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[MqDeadLetter]:
    """Archived dead letters newest first (by their death); ``state`` None for every state;
    ``search`` matches each word in the error, message id or routing key; ``before`` =
    (dead_at, id) of the last row of the previous page."""
    if state is not None and state not in STATES:
        raise Rejected.field(
            f"state must be one of {', '.join(STATES)} or any, not {state!r}", "state", "unknown"
        )
    if not 1 <= limit <= MAX_LIST:
        raise Rejected.field(f"limit must be 1 to {MAX_LIST}, not {limit}", "limit", "out_of_range")
    for name, value in (("queue", queue), ("reason", reason), ("q", search)):
        if value is not None and len(value) > MAX_TEXT:
            raise Rejected.field(f"{name} is longer than {MAX_TEXT} characters", name, "too long")
    r = MqDeadLetter
    where: list[Any] = []
    for column, value in ((r.state, state), (r.queue, queue), (r.reason, reason)):
        if value is not None:
            where.append(column == value)
    if since is not None:
        where.append(r.dead_at >= since)
    for term in (search or "").split()[:MAX_SEARCH_TERMS]:
        where.append(
            or_(
                *(
                    func.lower(c).contains(term.lower(), autoescape=True)
                    for c in (r.error, r.message_id, r.routing_key)
                )
            )
        )
    if before is not None:
        where.append(or_(r.dead_at < before[0], (r.dead_at == before[0]) & (r.id < before[1])))
    query = select(r).where(*where).order_by(r.dead_at.desc(), r.id.desc()).limit(limit)
    return list(session.scalars(query))


def get(session: Session, dead_id: uuid.UUID) -> MqDeadLetter:
    row = session.get(MqDeadLetter, dead_id)
    if row is None:
        raise NotFound(f"no archived dead letter {dead_id}")
    return row


def body_text(row: MqDeadLetter) -> str | None:
    """The kept body as text when it is UTF-8, else None."""
    try:
        return bytes(row.body).decode("utf-8")
    except UnicodeDecodeError:
        return None


def as_dict(row: MqDeadLetter, *, body: bool = True) -> dict[str, Any]:
    """The row for the API: the body as text when it is UTF-8, else base64 (``body_encoding``)."""
    out: dict[str, Any] = {
        "id": str(row.id), "vhost": row.vhost, "queue": row.queue, "exchange": row.exchange,
        "routing_key": row.routing_key, "message_id": row.message_id, "content_type": row.content_type,
        "reason": row.reason, "error": row.error, "attempts": row.attempts,
        "dead_at": _iso(row.dead_at), "archived_at": _iso(row.archived_at), "state": row.state,
        "replay_count": row.replay_count, "replayed_at": _iso(row.replayed_at), "updated_by": row.updated_by,
        "body_bytes": row.body_bytes, "truncated": row.truncated,
    }  # fmt: skip
    if body:
        text = body_text(row)
        out["properties"], out["headers"] = row.properties, row.headers
        out["body_encoding"] = "utf-8" if text is not None else "base64"
        out["body"] = text if text is not None else base64.b64encode(bytes(row.body)).decode()
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def deaths(row: MqDeadLetter) -> list[dict]:
    """RabbitMQ's x-death history as the archive kept it (newest first)."""
    found = (row.headers or {}).get("x-death")
    return [x for x in found if isinstance(x, dict)] if isinstance(found, list) else []


# -- choosing rows: {ids} or a filter ----------------------------------------------------


def _bad(name: str, why: str) -> Rejected:
    return Rejected.field(f"params.{name}: {why}", f"params.{name}", why, kind="body")


def parse_since(value: Any) -> datetime:
    """An ISO 8601 moment as naive UTC (the store's convention); Rejected naming params.since."""
    try:
        return utc_naive(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        raise _bad("since", f"must be an ISO 8601 time such as 2026-11-29T10:00:00Z, not {value!r}") from None


def check_selection(params: dict) -> None:
    """{ids: [uuid, ...]} or {queue, reason?, since?, limit?}; Rejected naming the param."""
    if ("ids" in params) == ("queue" in params):
        raise _bad("ids", "give either ids (a list of dead-letter ids) or queue (with reason, since, limit)")
    if "ids" in params:
        ids = params["ids"]
        if not isinstance(ids, list) or not ids:
            raise _bad("ids", f"must be a list of 1 to {MAX_IDS} dead-letter ids")
        if len(ids) > MAX_IDS:
            raise TooLarge.field(
                f"params.ids: {len(ids)} ids; at most {MAX_IDS}", "params.ids", "too_many", kind="body"
            )
        for item in ids:
            try:
                uuid.UUID(str(item))
            except ValueError:
                raise _bad("ids", f"{str(item)[:50]!r} is not a dead-letter id (a UUID)") from None
        return
    check_queue_name(params["queue"])
    if params.get("reason") is not None and params["reason"] not in REASONS:
        raise _bad("reason", f"must be one of {', '.join(REASONS)}, not {params['reason']!r}")
    if params.get("since") is not None:
        parse_since(params["since"])
    limit = params.get("limit", MAX_SELECT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SELECT:
        raise _bad("limit", f"must be a whole number from 1 to {MAX_SELECT}, not {limit!r}")


def select_rows(session: Session, params: dict, *, state: str = "dead") -> list[MqDeadLetter]:
    """The rows ``params`` name (check_selection's shapes) that are in ``state``, oldest first."""
    r = MqDeadLetter
    query = select(r).where(r.state == state)
    if "ids" in params:
        query = query.where(r.id.in_([uuid.UUID(str(i)) for i in params["ids"]]))
    else:
        query = query.where(r.queue == params["queue"])
        if params.get("reason"):
            query = query.where(r.reason == params["reason"])
        if params.get("since"):
            query = query.where(r.dead_at >= parse_since(params["since"]))
    return list(session.scalars(query.order_by(r.dead_at, r.id).limit(params.get("limit", MAX_SELECT))))


def _count(session: Session, params: dict) -> int:
    return len(select_rows(session, params))


# -- discard: the control plane itself -----------------------------------------------------


def discard(session: Session, params: dict, *, actor: str, reason: str | None, now: datetime,
            client: str | None = None) -> list[str]:  # fmt: skip
    """Mark the dead rows ``params`` name discarded (kept for the record, never replayed),
    audited; the ids discarded. NotFound when none matches."""
    check_selection(params)
    rows = select_rows(session, params)
    if not rows:
        raise NotFound("no dead letter in state dead matches: nothing to discard")
    ids = [row.id for row in rows]
    session.execute(
        update(MqDeadLetter).where(MqDeadLetter.id.in_(ids), MqDeadLetter.state == "dead")
        .values(state="discarded", updated_by=actor[:100])
    )  # fmt: skip
    audit.record(session, actor=actor, action="messaging.discard", target=TARGET, client=client,
                 details={"reason": reason, "params": params, "discarded": len(ids)})  # fmt: skip
    announce(session, MESSAGING)
    return [str(i) for i in ids]


# -- replay: the plan and the agent's step -------------------------------------------------


def check_replay(params: dict) -> None:
    check_selection(params)


def check_queue_name(value: Any, field: str = "params.queue", kind: str = "body") -> None:
    """A queue name RabbitMQ and the definition take; Rejected naming ``field`` otherwise."""
    if not isinstance(value, str) or not re.fullmatch(d.NAME_RE, value):
        why = "must be a queue name of 1 to 200 letters, digits and _ . : -"
        raise Rejected.field(f"{field}: {why}", field, why, kind=kind)


def check_purge(params: dict) -> None:
    check_queue_name(params.get("queue"))


def refuse_truncated(session: Session, params: dict) -> None:
    """Named rows whose body the archive cut cannot be sent again whole: Rejected naming them
    (a filtered replay skips them instead, and says so)."""
    if "ids" not in params:
        return
    cut = [str(r.id) for r in select_rows(session, params) if r.truncated]
    if cut:
        why = f"{len(cut)} archived with the body cut at the archive's cap: {', '.join(cut[:10])}"
        raise Rejected.field(f"params.ids: cannot be replayed: {why}", "params.ids", "truncated", kind="body")


def replay_message(row: MqDeadLetter) -> dict[str, Any]:
    """What the agent publishes for one row: where to, and the message as it was first sent."""
    headers = {k: v for k, v in (row.headers or {}).items() if k not in DROPPED_HEADERS}
    headers[REPLAYED_HEADER] = row.replay_count + 1
    props = {k: v for k, v in (row.properties or {}).items() if k in REPLAY_PROPERTIES}
    return {"id": str(row.id), "exchange": row.exchange, "routing_key": row.routing_key, "queue": row.queue,
            "message_id": row.message_id, "properties": props, "headers": headers,
            "body": base64.b64encode(bytes(row.body)).decode()}  # fmt: skip


def _chunks(messages: list[dict]) -> list[list[dict]]:
    """The messages in steps of at most STEP_BYTES of body (one message per step at least)."""
    out: list[list[dict]] = [[]]
    size = 0
    for message in messages:
        if out[-1] and size + len(message["body"]) > STEP_BYTES:
            out.append([])
            size = 0
        out[-1].append(message)
        size += len(message["body"])
    return out


def _agent_instance(session: Session, service: str) -> Any:
    """The first healthy instance of ``service`` an agent watches (it holds the broker's
    credentials); None when there is none."""
    return next((i for i in instances_of(session, service) if i.agent_id and i.health != "critical"), None)


def _start_replay(session: Session, action: Action, now: datetime) -> None:
    params = action.params or {}
    rows = select_rows(session, params)
    if not rows:
        return fail(session, action, "no archived dead letter in state dead matches", now)
    if "ids" in params:
        missing = sorted({str(i) for i in params["ids"]} - {str(r.id) for r in rows})
        if missing:
            return fail(
                session, action, f"not dead (replayed, discarded or unknown): {', '.join(missing[:10])}", now
            )
    cut = [str(r.id) for r in rows if r.truncated]
    if cut and "ids" in params:
        return fail(
            session, action, f"body cut by the archive's cap, cannot be replayed: {', '.join(cut[:10])}", now
        )
    instance = _agent_instance(session, action.target)
    if instance is None:
        return fail(
            session, action, f"no healthy instance of {action.target!r} with an agent to publish", now
        )
    messages = [replay_message(r) for r in rows if not r.truncated]
    steps = _chunks(messages)
    note = f"{len(messages)} message(s) in {len(steps)} step(s)" + (
        f"; {len(cut)} skipped (body cut)" if cut else ""
    )
    lifecycle.move(session, action, "running", actor=ACTOR, now=now, note=note)
    for chunk in steps:
        step = {"service": action.target, "instance": instance.address, "messages": chunk}
        add_step(session, action, "rabbitmq.publish", instance.agent_id, step, now)
    action.result = {"output": {"skipped_truncated": cut}, "error": None}
    return None


def mark_replayed(session: Session, ids: list[str], *, actor: str, now: datetime) -> int:
    """The rows the agent published: replayed, their count up by one."""
    if not ids:
        return 0
    r = MqDeadLetter
    done = session.execute(
        update(r).where(r.id.in_([uuid.UUID(i) for i in ids]), r.state == "dead")
        .values(state="replayed", replay_count=r.replay_count + 1, replayed_at=now, updated_by=actor[:100])
    )  # fmt: skip
    announce(session, MESSAGING)
    return done.rowcount or 0  # type: ignore[attr-defined]  # an UPDATE's CursorResult


def replay_plan(session: Session, action: Action, now: datetime) -> None:
    """Start the replay (choose the rows and the agent), then, once every step finished,
    mark what was published and end the action."""
    steps = lifecycle.children(session, action)
    if not steps:
        return _start_replay(session, action, now)
    if any(s.state not in lifecycle.FINISHED for s in steps):
        return None
    published = [
        i
        for s in steps
        if s.state == "succeeded"
        for i in ((s.result or {}).get("output") or {}).get("published", [])
    ]
    marked = mark_replayed(session, published, actor=action.requested_by, now=now)
    errors = [(s.result or {}).get("error") or s.state for s in steps if s.state != "succeeded"]
    errors += [
        f"{k}: {v}"
        for s in steps
        for k, v in (((s.result or {}).get("output") or {}).get("failed") or {}).items()
    ]
    skipped = ((action.result or {}).get("output") or {}).get("skipped_truncated", [])
    audit.record(session, actor=action.requested_by, action=REPLAY, target=action.target,
                 details={"action": str(action.id), "reason": action.reason, "params": action.params,
                          "replayed": marked, "failed": errors[:20]})  # fmt: skip
    output = {"replayed": published, "skipped_truncated": skipped}
    if errors:
        return fail(
            session, action, f"{marked} replayed; not replayed: " + "; ".join(errors[:10]), now, **output
        )
    return succeed(session, action, now, f"{marked} dead letter(s) replayed", **output)


def purge_plan(session: Session, action: Action, now: datetime) -> None:
    """One ``rabbitmq.purge`` step to the agent watching the broker; its count is the result."""
    steps = lifecycle.children(session, action)
    if not steps:
        instance = _agent_instance(session, action.target)
        if instance is None:
            return fail(
                session, action, f"no healthy instance of {action.target!r} with an agent to purge", now
            )
        lifecycle.move(session, action, "running", actor=ACTOR, now=now, note=f"agent at {instance.address}")
        params = {
            "service": action.target,
            "instance": instance.address,
            "queue": (action.params or {})["queue"],
        }
        add_step(session, action, "rabbitmq.purge", instance.agent_id, params, now)
        return None
    (step,) = steps[:1]
    if step.state not in lifecycle.FINISHED:
        return None
    if step.state != "succeeded":
        return fail(session, action, (step.result or {}).get("error") or step.state, now)
    output = (step.result or {}).get("output") or {}
    queue = (action.params or {})["queue"]
    audit.record(session, actor=action.requested_by, action=PURGE, target=action.target,
                 details={"action": str(action.id), "reason": action.reason, "queue": queue,
                          "purged": output.get("purged")})  # fmt: skip
    return succeed(
        session, action, now, f"{output.get('purged', '?')} message(s) purged from {queue}", **output
    )


PLANS: dict[str, Callable[[Session, Action, datetime], None]] = {REPLAY: replay_plan, PURGE: purge_plan}
PARAM_CHECKS: dict[str, Callable[[dict], None]] = {REPLAY: check_replay, PURGE: check_purge}


def describe_purge(session: Session, params: dict) -> list[str]:
    return [
        f"Delete every message waiting in queue {params.get('queue')} (its consumers never get them)",
        "Carried out by the agent watching RabbitMQ, through the management API",
    ]


def describe_discard(session: Session, params: dict) -> list[str]:
    return [
        f"Mark {_count(session, params)} archived dead letter(s) discarded: kept for the record, "
        "never replayed; nothing is sent to RabbitMQ"
    ]


def describe_replay(session: Session, params: dict) -> list[str]:
    rows = select_rows(session, params)
    cut = sum(r.truncated for r in rows)
    lines = [
        f"Publish {len(rows) - cut} archived dead letter(s) again to their original exchange and "
        "routing key, with their message id and x-coreplane-replayed set, each confirmed by the broker",
        "Carried out by the agent watching RabbitMQ; the ones it published become replayed",
    ]
    if cut:
        lines.append(f"{cut} cannot be replayed: the archive cut their body at its cap")
    return lines


# The previews, by kind (messaging/operations.py's DESCRIBE holds the two actions' too).
DESCRIBE: dict[str, Callable[[Session, dict], list[str]]] = {
    REPLAY: describe_replay,
    PURGE: describe_purge,
    "messaging.discard": describe_discard,
}


def describe(session: Session, kind: str, params: dict) -> list[str]:
    """What the operation will do, in plain words, for the console's preview."""
    return DESCRIBE[kind](session, params)
