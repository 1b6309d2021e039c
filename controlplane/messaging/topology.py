"""The topology on the broker: declare the definition's exchanges, queues and bindings through
kombu, read what the virtual host holds through the management API, diff the two and apply
the diff.

RabbitMQ redeclares a thing with the same settings as a no-op, so ``declare`` is idempotent;
it refuses (PRECONDITION_FAILED) a queue or exchange redeclared with another type or other
arguments. Such a change is therefore a *recreate*: delete, then declare again, which loses
a queue's messages, so ``apply`` refuses it for a non-empty queue unless ``force``. Things on
the broker the definition lacks are removed only with ``prune``, and never the tasks area's
(its queues, dead letters, events and Celery's own) nor RabbitMQ's (amq.*, the default
exchange, exclusive queues of live connections).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kombu import Exchange, Queue

from controlplane.errors import Conflict, NotFound
from controlplane.messaging.connection import MessagingRuntime, connect, reaching
from controlplane.messaging.definition import (
    BUILTIN_EXCHANGES,
    Declared,
    Definition,
    _binding,
    expand,
)
from controlplane.messaging.management import Management
from controlplane.settings import TasksSettings

COMPARED = ("type", "durable", "auto_delete", "arguments")
QUEUE_COLUMNS = ["name", "type", "durable", "auto_delete", "exclusive", "arguments"]
# Celery's own exchanges and the queues its workers make for events and remote control.
CELERY_EXCHANGES = frozenset({"celeryev", "celery.pidbox", "reply.celery.pidbox"})


@dataclass(frozen=True)
class Protected:
    """Names prune never removes: the tasks area's and Celery's."""

    queues: frozenset[str] = frozenset()
    exchanges: frozenset[str] = frozenset()

    @classmethod
    def of(cls, tasks: TasksSettings) -> Protected:
        dead = tasks.dead_letter_queue
        queues = frozenset({*tasks.queues, dead, tasks.events_queue})
        return cls(queues, frozenset({*tasks.queues, f"{dead}.dlx"}) | CELERY_EXCHANGES)

    def holds(self, item: Declared) -> bool:
        if item.kind == "queue":
            return _queue_kept(self, item.name)
        if item.kind == "exchange":
            return item.name in self.exchanges
        return item.source in self.exchanges or _queue_kept(self, item.destination)


def _queue_kept(protected: Protected, name: str) -> bool:
    return name in protected.queues or name.startswith("celeryev.") or name.endswith(".pidbox")


@dataclass(frozen=True)
class Change:
    """One exchange or queue whose settings differ: ``differences`` maps each field to
    (on the broker, wanted). Always a recreate: RabbitMQ changes neither in place."""

    wanted: Declared
    current: Declared
    differences: dict[str, tuple[Any, Any]]

    @property
    def recreate(self) -> bool:
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.wanted.kind,
            "name": self.wanted.name,
            "recreate": self.recreate,
            "differences": {k: {"current": c, "wanted": w} for k, (c, w) in self.differences.items()},
        }


@dataclass(frozen=True)
class TopologyDiff:
    add: list[Declared] = field(default_factory=list)
    change: list[Change] = field(default_factory=list)
    remove: list[Declared] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.add or self.change or self.remove)

    def to_dict(self) -> dict[str, Any]:
        return {
            "add": [d.model_dump() for d in self.add],
            "change": [c.to_dict() for c in self.change],
            "remove": [d.model_dump() for d in self.remove],
            "empty": self.empty,
        }


# -- what the broker holds --------------------------------------------------------------


def current(management: Management) -> list[Declared]:
    """The vhost's exchanges, queues and bindings as Declared, RabbitMQ's own left out (amq.*,
    the default exchange and its implicit bindings, exclusive queues)."""
    found = [
        Declared(kind="exchange", name=e["name"], type=e.get("type", ""), durable=e.get("durable", True),
                 auto_delete=e.get("auto_delete", False), arguments=e.get("arguments") or {})
        for e in management.exchanges()
        if e["name"] not in BUILTIN_EXCHANGES and not e["name"].startswith("amq.")
    ]  # fmt: skip
    for q in management.queues(QUEUE_COLUMNS):
        if q.get("exclusive") or q["name"].startswith("amq."):
            continue
        kind = q.get("type") or "classic"
        # A queue declared without x-queue-type is a classic one: compare it as such.
        arguments = {"x-queue-type": kind, **(q.get("arguments") or {})}
        found.append(Declared(kind="queue", name=q["name"], type=kind, durable=q.get("durable", True),
                              auto_delete=q.get("auto_delete", False), arguments=arguments))  # fmt: skip
    found += [
        _binding(b["source"], b["destination"], b.get("routing_key", ""), b.get("arguments") or None)
        for b in management.bindings()
        if b.get("source") and b.get("destination_type") == "queue"
    ]
    return found


# -- the diff (pure) ----------------------------------------------------------------------


def _key(item: Declared) -> tuple[str, ...]:
    if item.kind == "binding":
        args = json.dumps(item.arguments, sort_keys=True)
        return ("binding", item.source, item.destination, item.routing_key, args)
    return (item.kind, item.name)


def _differences(wanted: Declared, found: Declared) -> dict[str, tuple[Any, Any]]:
    return {
        name: (getattr(found, name), getattr(wanted, name))
        for name in COMPARED
        if getattr(found, name) != getattr(wanted, name)
    }


def diff(
    wanted: list[Declared], found: list[Declared], *, protected: Protected | None = None
) -> TopologyDiff:
    """What to add, recreate and (with prune) remove to take the broker from ``found`` to
    ``wanted``; protected names are never listed for removal."""
    protected = protected or Protected()
    on_broker = {_key(d): d for d in found}
    keys = {_key(d) for d in wanted}
    add, change = [], []
    for item in wanted:
        there = on_broker.get(_key(item))
        if there is None:
            add.append(item)
        elif item.kind != "binding" and (differences := _differences(item, there)):
            change.append(Change(item, there, differences))
    order = {"binding": 0, "queue": 1, "exchange": 2}  # remove bindings first, exchanges last
    remove = sorted(
        (d for d in found if _key(d) not in keys and not protected.holds(d)),
        key=lambda d: (order[d.kind], d.name),
    )
    return TopologyDiff(add, change, remove)


# -- changing the broker ------------------------------------------------------------------


def _declare_one(channel: Any, item: Declared) -> None:
    if item.kind == "exchange":
        Exchange(item.name, type=item.type, durable=item.durable, auto_delete=item.auto_delete,
                 arguments=item.arguments or None, channel=channel).declare()  # fmt: skip
    elif item.kind == "queue":
        Queue(item.name, durable=item.durable, auto_delete=item.auto_delete,
              queue_arguments=item.arguments, channel=channel).queue_declare()  # fmt: skip
    else:
        Queue(item.destination, channel=channel).bind_to(
            item.source, routing_key=item.routing_key, arguments=item.arguments or None
        )


def declare(target: MessagingRuntime | str, declared: list[Declared]) -> None:
    """Declare each item, in order, on the runtime's (or the URL's) vhost. Declaring twice
    changes nothing; an item the broker holds with other settings is Conflict naming it."""
    from amqp.exceptions import NotFound as AmqpNotFound  # type: ignore[import-untyped]
    from amqp.exceptions import PreconditionFailed

    url = target if isinstance(target, str) else target.url
    with reaching("declaring the topology"), connect(url) as conn:
        channel = conn.channel()
        for item in declared:
            try:
                _declare_one(channel, item)
            except PreconditionFailed as exc:
                raise Conflict(
                    f"{item.kind} {item.name!r} is on the broker with other settings ({exc.reply_text}): "
                    "apply the definition to recreate it, or delete it first"
                ) from None
            except AmqpNotFound as exc:
                raise NotFound(f"cannot declare {item.kind} {item.name!r}: {exc.reply_text}") from None
        channel.close()


def depth(url: str, queue: str) -> int:
    """Messages ready in ``queue`` now (a passive declare: exact, unlike the management API's
    figures, which lag by its statistics interval); NotFound when there is no such queue."""
    from amqp.exceptions import NotFound as AmqpNotFound

    with reaching(f"reading the depth of {queue!r}"), connect(url) as conn:
        channel = conn.channel()
        try:
            found = channel.queue_declare(queue=queue, passive=True)
        except AmqpNotFound:
            raise NotFound(f"no queue {queue!r} on the broker") from None
        channel.close()
        return int(found.message_count)


def _unsafe(management: Management, url: str, names: list[str]) -> list[str]:
    """Of the queues ``names``, those holding messages (ready or unacknowledged), with how many."""
    out = []
    for name in names:
        try:
            held = max(depth(url, name), int(management.queue(name).get("messages") or 0))
        except NotFound:  # gone since the diff was read: nothing to lose
            continue
        if held:
            out.append(f"queue {name!r} holds {held} message(s)")
    return out


def _remove(url: str, items: list[Declared]) -> None:
    """Delete each item over AMQP; one already gone (its queue went first) is skipped."""
    from amqp.exceptions import NotFound as AmqpNotFound

    with reaching("removing from the topology"), connect(url) as conn:
        for item in items:
            channel = conn.channel()
            try:
                if item.kind == "binding":
                    channel.queue_unbind(
                        queue=item.destination,
                        exchange=item.source,
                        routing_key=item.routing_key,
                        arguments=item.arguments or None,
                    )
                elif item.kind == "queue":
                    channel.queue_delete(queue=item.name)
                else:
                    channel.exchange_delete(exchange=item.name)
                channel.close()
            except AmqpNotFound:
                continue  # the error closed that channel; the next item opens another


def plan(runtime: MessagingRuntime, definition: Definition) -> TopologyDiff:
    """The diff between ``definition`` and the broker, for a preview or a check."""
    wanted = expand(definition, runtime.settings.messaging.retry)
    with Management.of(runtime) as api:
        return diff(wanted, current(api), protected=Protected.of(runtime.settings.tasks))


def apply(
    runtime: MessagingRuntime, definition: Definition, *, prune: bool = False, force: bool = False
) -> TopologyDiff:
    """Make the broker hold ``definition``: recreate what changed, declare everything (the
    bindings of a recreated exchange or queue come back with it), remove what the definition
    lacks when ``prune``. Conflict, before anything changes, when that would drop a non-empty
    queue and not ``force``. Returns the diff it applied; auditing is the caller's."""
    wanted = expand(definition, runtime.settings.messaging.retry)
    with Management.of(runtime) as api:
        found = diff(wanted, current(api), protected=Protected.of(runtime.settings.tasks))
        dropped = [c.wanted.name for c in found.change if c.wanted.kind == "queue"]
        if prune:
            dropped += [d.name for d in found.remove if d.kind == "queue"]
        refused = [] if force else _unsafe(api, runtime.url, dropped)
    if refused:
        raise Conflict(
            f"{'; '.join(refused)}: applying would delete it to recreate or prune it, losing them; "
            "move or drain them first, or apply with force"
        )
    _remove(runtime.url, [c.current for c in found.change])
    declare(runtime, wanted)
    if prune:
        _remove(runtime.url, found.remove)
    return found
