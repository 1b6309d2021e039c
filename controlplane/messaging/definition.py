"""The topology definition (``COREPLANE_MESSAGING__DEFINITION``, or a body sent to the API):
exchanges, queues and bindings as an application declares them, checked, and expanded into
what RabbitMQ holds: each queue with its arguments, its retry queues and its final
dead-letter queue. Pure: nothing here talks to the broker.

    {"exchanges": [{"name": "orders", "type": "topic"}],
     "queues": [{"name": "orders.created", "type": "quorum", "retry": {"attempts": 5}}],
     "bindings": [{"exchange": "orders", "queue": "orders.created", "routing_key": "order.created.*"}]}

Retry and dead letters, for a queue Q with ``dead_letter`` (the default):

- ``Q.dlq``: the final dead-letter queue. Q's own ``x-dead-letter-exchange`` routes what the
  broker dead-letters (a reject, an expired TTL, an overflow) there through the
  ``coreplane.dead`` exchange; the consumer helper publishes there what failed its last
  attempt or its schema, with the ``HEADER_*`` headers saying why.
- ``Q.retry.1`` .. ``Q.retry.N-1`` when Q has ``retry``: the n-th retry waits in
  ``Q.retry.n``, whose ``x-message-ttl`` is that attempt's backoff, and whose own dead-letter
  route (the default exchange, routing key Q) brings the message back to Q when it expires.
  One queue per attempt because RabbitMQ expires only a queue's head: one queue with mixed
  per-message TTLs would hold a short wait behind a long one.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controlplane.errors import Rejected
from controlplane.settings import MessagingRetrySettings

DEAD_EXCHANGE = "coreplane.dead"  # direct; routing key = the queue a dead letter came from
DLQ_SUFFIX = ".dlq"
RETRY_INFIX = ".retry."

# Headers the library sets on a message it retries or dead-letters (x-death is RabbitMQ's own).
HEADER_ATTEMPT = "x-coreplane-attempt"  # the delivery this is: 1 for the first
HEADER_QUEUE = "x-coreplane-queue"  # the queue it failed in
HEADER_EXCHANGE = "x-coreplane-exchange"  # where it was first published
HEADER_ROUTING_KEY = "x-coreplane-routing-key"
HEADER_REASON = "x-coreplane-reason"  # failed | invalid | rejected
HEADER_ERROR = "x-coreplane-error"  # "ValueError: ..." (capped at ERROR_MAX)
HEADER_FAILED_AT = "x-coreplane-failed-at"  # ISO 8601 UTC
ERROR_MAX = 1000

MAX_EXCHANGES = 200
MAX_QUEUES = 500
MAX_BINDINGS = 2000
MAX_ARGUMENTS = 20
NAME_RE = r"^[A-Za-z0-9_.:\-]{1,200}$"
ROUTING_KEY_MAX = 255
BUILTIN_EXCHANGES = frozenset(
    {"", "amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match", "amq.rabbitmq.trace"}
)
# Arguments the definition's own fields set: given through ``arguments`` they would
# silently fight them, so they are refused there.
MANAGED_ARGUMENTS = frozenset(
    {
        "x-queue-type", "x-max-priority", "x-message-ttl", "x-max-length", "x-max-length-bytes",
        "x-overflow", "x-dead-letter-exchange", "x-dead-letter-routing-key",
    }
)  # fmt: skip

Name = Annotated[str, Field(pattern=NAME_RE)]
Arguments = Annotated[dict[str, str | int | float | bool], Field(max_length=MAX_ARGUMENTS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exchange(_Strict):
    name: Name
    type: Literal["direct", "topic", "fanout", "headers"] = "direct"
    durable: bool = True
    auto_delete: bool = False
    arguments: Arguments = Field(default_factory=dict)

    @model_validator(mode="after")
    def _not_builtin(self) -> Exchange:
        if self.name in BUILTIN_EXCHANGES or self.name.startswith("amq.") or self.name == DEAD_EXCHANGE:
            raise ValueError(f"{self.name!r} is RabbitMQ's or coreplane's own exchange; pick another name")
        return self


class Retry(_Strict):
    attempts: int = Field(ge=1, le=20, description="Deliveries in all, the first included.")
    backoff_s: float = Field(gt=0, le=86400)
    multiplier: float = Field(ge=1, le=10)
    backoff_max_s: float = Field(gt=0, le=86400 * 7)

    def delay_ms(self, retry: int) -> int:
        """The wait before retry ``retry`` (1 for the first), in whole milliseconds."""
        return max(1, round(min(self.backoff_s * self.multiplier ** (retry - 1), self.backoff_max_s) * 1000))


class Queue(_Strict):
    name: Name
    type: Literal["classic", "quorum"] = "classic"
    durable: bool = True
    max_priority: int | None = Field(None, ge=1, le=255, description="x-max-priority (classic only).")
    message_ttl_ms: int | None = Field(None, ge=0, le=2**31 - 1)
    max_length: int | None = Field(None, ge=0, le=2**31 - 1)
    max_length_bytes: int | None = Field(None, ge=0, le=2**53)
    overflow: Literal["drop-head", "reject-publish", "reject-publish-dlx"] | None = None
    dead_letter: bool = Field(True, description="Give the queue a final dead-letter queue, Q.dlq.")
    # true: the settings' default retry; an object: this queue's own; absent: no retry.
    retry: bool | dict[str, Any] = False
    arguments: Arguments = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Queue:
        if self.name.endswith(DLQ_SUFFIX) or RETRY_INFIX in self.name:
            raise ValueError(f"names ending {DLQ_SUFFIX!r} or holding {RETRY_INFIX!r} are coreplane's own")
        managed = sorted(MANAGED_ARGUMENTS & set(self.arguments))
        if managed:
            raise ValueError(f"set {', '.join(managed)} through the queue's own fields, not arguments")
        if self.type == "quorum":
            if not self.durable:
                raise ValueError("a quorum queue is always durable")
            if self.max_priority is not None:
                raise ValueError("max_priority needs type classic: quorum queues on RabbitMQ 3.x have none")
            if self.overflow == "reject-publish-dlx":
                raise ValueError("quorum queues take overflow drop-head or reject-publish")
        if self.retry is not False and not self.dead_letter:
            raise ValueError("retry needs dead_letter: the last failure goes to the dead-letter queue")
        return self


class Binding(_Strict):
    exchange: Name
    queue: Name
    routing_key: str = Field("", max_length=ROUTING_KEY_MAX)
    arguments: Arguments = Field(default_factory=dict)


class Definition(_Strict):
    exchanges: list[Exchange] = Field(default_factory=list, max_length=MAX_EXCHANGES)
    queues: list[Queue] = Field(default_factory=list, max_length=MAX_QUEUES)
    bindings: list[Binding] = Field(default_factory=list, max_length=MAX_BINDINGS)

    @model_validator(mode="after")
    def _references(self) -> Definition:
        declared = {"exchange": [e.name for e in self.exchanges], "queue": [q.name for q in self.queues]}
        for kind, names in declared.items():
            seen = {n for n in names if names.count(n) > 1}
            if seen:
                raise ValueError(f"{kind} {sorted(seen)[0]!r} is declared twice")
        exchanges = {e.name for e in self.exchanges} | BUILTIN_EXCHANGES
        queues = {q.name for q in self.queues}
        for i, binding in enumerate(self.bindings):
            if binding.exchange not in exchanges:
                raise ValueError(f"bindings[{i}]: exchange {binding.exchange!r} is not declared")
            if binding.queue not in queues:
                raise ValueError(f"bindings[{i}]: queue {binding.queue!r} is not declared")
        return self

    def exchange(self, name: str) -> Exchange | None:
        return next((e for e in self.exchanges if e.name == name), None)

    def queue(self, name: str) -> Queue | None:
        return next((q for q in self.queues if q.name == name), None)


class Declared(_Strict):
    """One thing as RabbitMQ holds it: what the broker is asked to declare and what a diff
    compares (``kind`` exchange, queue or binding; a binding's name is exchange/queue/key)."""

    kind: Literal["exchange", "queue", "binding"]
    name: str
    type: str = ""
    durable: bool = True
    auto_delete: bool = False
    arguments: dict[str, Any] = Field(default_factory=dict)
    # bindings only
    source: str = ""
    destination: str = ""
    routing_key: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)


def parse(raw: Any, *, field: str = "definition") -> Definition:
    """A definition from JSON-like data; Rejected naming the first wrong field
    (``definition.queues[2].max_priority``) otherwise."""
    if raw is None:
        return Definition()
    try:
        return Definition.model_validate(raw)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            path = field + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
            errors.append({"kind": "body", "index": None, "field": path, "reason": err["msg"]})
        first = errors[0]
        raise Rejected(f"{first['field']}: {first['reason']}", errors) from None


def retry_of(queue: Queue, defaults: MessagingRetrySettings) -> Retry | None:
    """The queue's retry policy: its own, the settings' default (``retry: true``) or none."""
    if queue.retry is False:
        return None
    base = defaults.model_dump()
    if isinstance(queue.retry, dict):
        base |= queue.retry
    try:
        return Retry.model_validate(base)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise Rejected.field(
            f"queue {queue.name!r}: retry.{where}: {err['msg']}", f"retry.{where}", err["msg"], kind="body"
        ) from None


def dlq_name(queue: str) -> str:
    return queue + DLQ_SUFFIX


def retry_queue_name(queue: str, retry: int) -> str:
    return f"{queue}{RETRY_INFIX}{retry}"


def source_queue(name: str) -> str | None:
    """Q for Q.dlq or Q.retry.n; None for any other name."""
    if name.endswith(DLQ_SUFFIX):
        return name[: -len(DLQ_SUFFIX)]
    match = re.fullmatch(r"(.+)\.retry\.\d+", name)
    return match.group(1) if match else None


def queue_arguments(queue: Queue) -> dict[str, Any]:
    args: dict[str, Any] = {"x-queue-type": queue.type, **queue.arguments}
    for name, value in (
        ("x-max-priority", queue.max_priority),
        ("x-message-ttl", queue.message_ttl_ms),
        ("x-max-length", queue.max_length),
        ("x-max-length-bytes", queue.max_length_bytes),
        ("x-overflow", queue.overflow),
    ):
        if value is not None:
            args[name] = value
    if queue.dead_letter:
        args["x-dead-letter-exchange"] = DEAD_EXCHANGE
        args["x-dead-letter-routing-key"] = queue.name
    return args


def expand(definition: Definition, defaults: MessagingRetrySettings) -> list[Declared]:
    """Everything the definition puts on the broker, in the order it must be declared
    (exchanges, queues, then bindings): the coreplane.dead exchange and each queue's
    dead-letter and retry queues included."""
    out = [
        Declared(kind="exchange", name=e.name, type=e.type, durable=e.durable,
                 auto_delete=e.auto_delete, arguments=dict(e.arguments))
        for e in definition.exchanges
    ]  # fmt: skip
    dead = [q for q in definition.queues if q.dead_letter]
    if dead:
        out.append(Declared(kind="exchange", name=DEAD_EXCHANGE, type="direct"))
    bindings: list[Declared] = []
    for queue in definition.queues:
        out.append(
            Declared(kind="queue", name=queue.name, type=queue.type, durable=queue.durable,
                     arguments=queue_arguments(queue))
        )  # fmt: skip
        if queue.dead_letter:
            # The dead letters of a quorum queue are kept as durably as the queue was.
            out.append(Declared(kind="queue", name=dlq_name(queue.name), type=queue.type,
                                arguments={"x-queue-type": queue.type}))  # fmt: skip
            bindings.append(_binding(DEAD_EXCHANGE, dlq_name(queue.name), queue.name))
        retry = retry_of(queue, defaults)
        if retry is not None:
            out += [_retry_queue(queue.name, n, retry.delay_ms(n)) for n in range(1, retry.attempts)]
    bindings += [_binding(b.exchange, b.queue, b.routing_key, b.arguments) for b in definition.bindings]
    return out + bindings


def _retry_queue(queue: str, retry: int, ttl_ms: int) -> Declared:
    """Where retry ``retry`` of a message of ``queue`` waits ``ttl_ms``, then goes back."""
    arguments = {
        "x-queue-type": "classic",
        "x-message-ttl": ttl_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
    }
    return Declared(kind="queue", name=retry_queue_name(queue, retry), type="classic", arguments=arguments)


def _binding(exchange: str, queue: str, routing_key: str, arguments: dict | None = None) -> Declared:
    # A headers exchange binds one queue several times with the same (empty) key: the
    # arguments tell those apart.
    suffix = json.dumps(arguments, sort_keys=True) if arguments else ""
    return Declared(
        kind="binding",
        name=f"{exchange}/{queue}/{routing_key}{suffix}",
        source=exchange,
        destination=queue,
        routing_key=routing_key,
        arguments=dict(arguments or {}),
    )
