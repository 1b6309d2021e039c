"""Queue management as actions (target "rabbitmq"): apply the topology, declare, delete and
move between queues, set and delete policies. Each goes through the action spine (an Action
row, its audit trail, the console's preview and confirm); the leader carries them out
itself, in ``advance``, from its control loop (controlplane/loops/control.py), and ends each
succeeded or failed in the same round. Without a broker on the leader, ``PLANS`` fail them.

``PARAM_CHECKS`` refuse bad parameters, naming ``params.<field>``, before an action is
stored (actions/plans.py registers them). ``DESCRIBE`` says in plain words what each
operation will do, for the preview; the dead-letter operations (messaging/dead.py) add
theirs to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from controlplane.actions import carried
from controlplane.actions.carried import OperationFailed, Outcome
from controlplane.errors import Rejected
from controlplane.messaging import dead, topology
from controlplane.messaging.connection import (
    NOT_CONFIGURED,
    MessagingRuntime,
    broker_errors,
    connect,
    reaching,
)
from controlplane.messaging.definition import (
    Binding,
    Declared,
    Definition,
    Queue,
    _binding,
    dlq_name,
    expand,
    parse,
)
from controlplane.messaging.management import Management
from controlplane.store.models import Action

KINDS = ("mq.apply", "mq.declare", "mq.delete", "mq.move", "mq.policy", "mq.policy_delete")
TARGET = "rabbitmq"
MAX_NAME = 255  # RabbitMQ's own limit on queue and policy names
MAX_PATTERN = 255
MAX_MOVE = 10_000
MAX_DECLARE_BINDINGS = 50
MAX_POLICY_PRIORITY = 999
APPLY_TO = ("queues", "exchanges", "all")
OVERFLOWS = ("drop-head", "reject-publish", "reject-publish-dlx")


# -- parameters ------------------------------------------------------------------------


def _bad(name: str, why: str) -> Rejected:
    return Rejected.field(f"params.{name}: {why}", f"params.{name}", why, kind="body")


def _name(params: dict, field: str, what: str = "queue") -> str:
    value = params.get(field)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME or not value.isprintable():
        raise _bad(field, f"must be a {what} name of 1 to {MAX_NAME} printable characters")
    return value


def _flag(params: dict, field: str) -> bool:
    value = params.get(field, False)
    if not isinstance(value, bool):
        raise _bad(field, "must be true or false")
    return value


def _whole(params: dict, field: str, low: int, high: int, default: int) -> int:
    value = params.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(field, f"must be a whole number from {low} to {high}, not {value!r}")
    return value


def _model(model: type[BaseModel], raw: Any, field: str) -> Any:
    """``raw`` as ``model``, or Rejected naming the first wrong field under ``params.<field>``."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        raise _bad(f"{field}{where}", err["msg"]) from None


def _check_apply(params: dict) -> None:
    _flag(params, "prune")
    _flag(params, "force")
    if "definition" in params:
        parse(params["definition"], field="params.definition")


def declared_queue(params: dict) -> tuple[Queue, list[Binding]]:
    """The queue and bindings of an mq.declare, checked."""
    queue = _model(Queue, params.get("queue"), "queue")
    raw = params.get("bindings", [])
    if not isinstance(raw, list) or len(raw) > MAX_DECLARE_BINDINGS:
        raise _bad("bindings", f"must be a list of at most {MAX_DECLARE_BINDINGS} bindings")
    bindings = [_model(Binding, b, f"bindings[{i}]") for i, b in enumerate(raw)]
    for i, binding in enumerate(bindings):
        if binding.queue != queue.name:
            raise _bad(f"bindings[{i}].queue", f"must be the declared queue {queue.name!r}")
    return queue, bindings


def _check_declare(params: dict) -> None:
    declared_queue(params)


def _check_delete(params: dict) -> None:
    _name(params, "queue")
    _flag(params, "if_empty")


def _check_move(params: dict) -> None:
    if _name(params, "source") == _name(params, "destination"):
        raise _bad("destination", "must be another queue than the source")
    _whole(params, "limit", 1, MAX_MOVE, 100)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME


# What RabbitMQ 3.10's policies accept for queues and exchanges (federation and shovel keys need
# plugins this broker may lack), each with the check of its value.
POLICY_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max-length": (_count, "a whole number of messages, 0 or more"),
    "max-length-bytes": (_count, "a whole number of bytes, 0 or more"),
    "message-ttl": (_count, "milliseconds, a whole number, 0 or more"),
    "expires": (lambda v: _count(v) and v > 0, "milliseconds unused before deletion, more than 0"),
    "delivery-limit": (_count, "a whole number of deliveries (quorum queues)"),
    "overflow": (lambda v: v in OVERFLOWS, f"one of {', '.join(OVERFLOWS)}"),
    "dead-letter-exchange": (_text, "an exchange name"),
    "dead-letter-routing-key": (_text, "a routing key"),
    "queue-mode": (lambda v: v in ("default", "lazy"), "default or lazy (classic queues)"),
    "queue-leader-locator": (lambda v: v in ("client-local", "balanced"), "client-local or balanced"),
    "max-age": (lambda v: isinstance(v, str) and bool(re.fullmatch(r"\d+[YMDhms]", v)), "like 7D or 12h"),
    "alternate-exchange": (_text, "an exchange name (exchanges)"),
}
MIRRORING = ("ha-mode", "ha-params", "ha-sync-mode", "ha-promote-on-shutdown", "ha-promote-on-failure")


def _check_policy_definition(definition: Any) -> None:
    if not isinstance(definition, dict) or not 0 < len(definition) <= len(POLICY_KEYS):
        raise _bad("definition", f"must be an object of 1 to {len(POLICY_KEYS)} policy keys")
    for key, value in definition.items():
        if key in MIRRORING:
            raise _bad(f"definition.{key}", "classic queue mirroring is deprecated: use a quorum queue")
        if key not in POLICY_KEYS:
            raise _bad(f"definition.{key}", f"not a policy key; known: {', '.join(POLICY_KEYS)}")
        check, expected = POLICY_KEYS[key]
        if not check(value):
            raise _bad(f"definition.{key}", f"must be {expected}, not {value!r}")


def _check_policy(params: dict) -> None:
    _name(params, "name", "policy")
    pattern = params.get("pattern")
    if not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_PATTERN:
        raise _bad("pattern", f"must be a regular expression of 1 to {MAX_PATTERN} characters")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise _bad("pattern", f"is not a regular expression: {exc}") from None
    _check_policy_definition(params.get("definition"))
    if params.get("apply_to", "queues") not in APPLY_TO:
        raise _bad("apply_to", f"must be one of {', '.join(APPLY_TO)}, not {params.get('apply_to')!r}")
    _whole(params, "priority", 0, MAX_POLICY_PRIORITY, 0)


def _check_policy_delete(params: dict) -> None:
    _name(params, "name", "policy")


PARAM_CHECKS: dict[str, Callable[[dict], None]] = {
    "mq.apply": _check_apply,
    "mq.declare": _check_declare,
    "mq.delete": _check_delete,
    "mq.move": _check_move,
    "mq.policy": _check_policy,
    "mq.policy_delete": _check_policy_delete,
}


# -- carrying them out -------------------------------------------------------------------


def _apply(runtime: MessagingRuntime, params: dict) -> Outcome:
    given = "definition" in params
    definition = parse(params["definition"], field="params.definition") if given else runtime.definition
    prune, force = bool(params.get("prune")), bool(params.get("force"))
    done = topology.apply(runtime, definition, prune=prune, force=force)
    removed = len(done.remove) if prune else 0
    note = f"topology applied: {len(done.add)} added, {len(done.change)} recreated, {removed} removed"
    return note, {"diff": done.to_dict(), "pruned": prune, "definition": "given" if given else "settings"}


def declared_items(runtime: MessagingRuntime, queue: Queue, bindings: list[Binding]) -> list[Declared]:
    """What declaring one queue puts on the broker: it, its dead-letter and retry queues, its bindings."""
    items = expand(Definition(queues=[queue]), runtime.settings.messaging.retry)
    return items + [_binding(b.exchange, b.queue, b.routing_key, b.arguments) for b in bindings]


def _declare(runtime: MessagingRuntime, params: dict) -> Outcome:
    queue, bindings = declared_queue(params)
    items = declared_items(runtime, queue, bindings)
    topology.declare(runtime, items)
    names = [i.name for i in items if i.kind == "queue"]
    return f"queue {queue.name} declared ({len(names)} queue(s), {len(bindings)} binding(s))", {
        "declared": names
    }


def _protected(runtime: MessagingRuntime, queue: str) -> None:
    kept = topology.Protected.of(runtime.settings.tasks)
    if kept.holds(Declared(kind="queue", name=queue)):
        raise OperationFailed(f"queue {queue!r} belongs to the tasks area: manage it from the tasks pages")


def _delete(runtime: MessagingRuntime, params: dict) -> Outcome:
    name, if_empty = params["queue"], bool(params.get("if_empty"))
    _protected(runtime, name)
    with Management.of(runtime) as api:
        held = int(api.queue(name).get("messages") or 0)
        api.delete_queue(name, if_empty=if_empty)
    return f"queue {name} deleted", {"queue": name, "messages_before": held, "if_empty": if_empty}


def move(url: str, source: str, destination: str, limit: int) -> int:
    """Move up to ``limit`` messages from the head of ``source`` to ``destination``: each is
    published again with its properties and headers, confirmed, then acked in ``source``.
    A message whose publish fails is not acked, so the broker gives it back to ``source``."""
    from amqp import Message  # type: ignore[import-untyped]

    moved = 0
    with reaching(f"moving messages from {source!r} to {destination!r}"), connect(url, confirms=True) as conn:
        channel = conn.channel()
        for name in (source, destination):
            topology.depth(url, name)  # NotFound before anything moves
        while moved < limit:
            message = channel.basic_get(queue=source, no_ack=False)
            if message is None:
                break
            try:
                channel.basic_publish(Message(message.body, **message.properties), exchange="",
                                      routing_key=destination)  # fmt: skip
            except broker_errors() as exc:
                raise OperationFailed(
                    f"{moved} message(s) moved, then {destination!r} refused the next "
                    f"(it went back to {source!r}): {type(exc).__name__}: {exc}"
                ) from None
            channel.basic_ack(message.delivery_tag)
            moved += 1
        channel.close()
    return moved


def _move(runtime: MessagingRuntime, params: dict) -> Outcome:
    source, destination, limit = params["source"], params["destination"], int(params.get("limit", 100))
    moved = move(runtime.url, source, destination, limit)
    output = {"source": source, "destination": destination, "moved": moved, "limit": limit}
    return f"{moved} message(s) moved from {source} to {destination}", output


def _policy(runtime: MessagingRuntime, params: dict) -> Outcome:
    name, apply_to, priority = (
        params["name"],
        params.get("apply_to", "queues"),
        int(params.get("priority", 0)),
    )
    with Management.of(runtime) as api:
        api.put_policy(name, params["pattern"], params["definition"], apply_to=apply_to, priority=priority)
    return f"policy {name} set on {apply_to} matching {params['pattern']}", {"policy": name}


def _policy_delete(runtime: MessagingRuntime, params: dict) -> Outcome:
    with Management.of(runtime) as api:
        api.delete_policy(params["name"])
    return f"policy {params['name']} deleted", {"policy": params["name"]}


CARRY_OUT: dict[str, Callable[[MessagingRuntime, dict], Outcome]] = {
    "mq.apply": _apply,
    "mq.declare": _declare,
    "mq.delete": _delete,
    "mq.move": _move,
    "mq.policy": _policy,
    "mq.policy_delete": _policy_delete,
}


def carry_out(session: Session, runtime: MessagingRuntime, action: Action, now: datetime) -> None:
    """Do one pending operation and end its action, audited (actions/carried.py)."""
    carried.carry_out(
        session, action, now, lambda: CARRY_OUT[action.kind](runtime, action.params or {}),
        target=TARGET, backend_errors=broker_errors(), backend="RabbitMQ",
    )  # fmt: skip


def advance(session: Session, runtime: MessagingRuntime, *, now: datetime) -> int:
    """Carry out every pending queue operation, oldest first (the leader's control loop,
    before the other plans); returns how many."""
    actions = carried.pending(session, KINDS)
    for action in actions:
        carry_out(session, runtime, action, now)
    return len(actions)


PLANS: dict[str, Callable[[Session, Action, datetime], None]] = dict.fromkeys(
    KINDS, carried.unavailable(NOT_CONFIGURED)
)


# -- the preview -------------------------------------------------------------------------


def _describe_apply(session: Session, params: dict) -> list[str]:
    which = "the definition given" if "definition" in params else "the definition in the settings"
    recreate = (
        "even when a queue holds messages: they are lost (force)"
        if params.get("force")
        else "refused, before anything changes, when such a queue holds messages"
    )
    prune = (
        "Remove the exchanges, queues and bindings the definition lacks (never the tasks area's or "
        "RabbitMQ's own)"
        if params.get("prune")
        else "Leave alone what is on the broker but not in the definition (no prune)"
    )
    return [
        f"Compare {which} with the exchanges, queues and bindings on RabbitMQ",
        "Declare what is missing: each queue with its dead-letter and retry queues",
        f"Delete and declare again each exchange or queue whose type or arguments changed, {recreate}",
        prune,
    ]


def _describe_declare(session: Session, params: dict) -> list[str]:
    queue, bindings = params.get("queue") or {}, params.get("bindings") or []
    name = queue.get("name", "?") if isinstance(queue, dict) else "?"
    lines = [f"Declare {queue.get('type', 'classic')} queue {name} (nothing happens if it exists as is)"]
    if isinstance(queue, dict) and queue.get("dead_letter", True):
        lines.append(f"with its dead-letter queue {dlq_name(name)} and, if it retries, its retry queues")
    lines += [f"Bind it to exchange {b.get('exchange')!r} with key {b.get('routing_key', '')!r}"
              for b in bindings if isinstance(b, dict)]  # fmt: skip
    return lines


def _describe_delete(session: Session, params: dict) -> list[str]:
    queue = params.get("queue")
    first = (
        f"Delete queue {queue} only if it is empty (RabbitMQ refuses otherwise)"
        if params.get("if_empty")
        else f"Delete queue {queue} and every message in it"
    )
    return [first, "Its bindings go with it; if the definition declares it, the next apply declares it again"]


def _describe_move(session: Session, params: dict) -> list[str]:
    source, destination = params.get("source"), params.get("destination")
    return [
        f"Move at most {params.get('limit', 100)} messages from {source} to {destination}, oldest first",
        f"Each is published to {destination} with its properties and headers, confirmed by RabbitMQ, "
        f"then removed from {source}",
    ]


def _describe_policy(session: Session, params: dict) -> list[str]:
    where = f"{params.get('apply_to', 'queues')} whose name matches /{params.get('pattern')}/"
    return [
        f"Set policy {params.get('name')} on {where}, priority {params.get('priority', 0)}: "
        f"{json.dumps(params.get('definition'))}",
        "It replaces a policy of that name; each queue follows the matching policy of highest priority",
    ]


def _describe_policy_delete(session: Session, params: dict) -> list[str]:
    return [f"Delete policy {params.get('name')}: the queues it matched lose its settings"]


DESCRIBE: dict[str, Callable[[Session, dict], list[str]]] = {
    "mq.apply": _describe_apply,
    "mq.declare": _describe_declare,
    "mq.delete": _describe_delete,
    "mq.move": _describe_move,
    "mq.policy": _describe_policy,
    "mq.policy_delete": _describe_policy_delete,
    # messaging.replay and queue.purge, carried out by an agent (messaging/dead.py).
    dead.REPLAY: dead.describe_replay,
    dead.PURGE: dead.describe_purge,
}


def describe(session: Session, kind: str, params: dict) -> list[str]:
    """The steps an operation will take, in plain words, for the console's preview."""
    found = DESCRIBE.get(kind)
    return found(session, params) if found else [f"Unknown messaging operation {kind}"]
