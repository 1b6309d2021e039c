"""The consumer helper: take messages from one queue of the definition, hand each to a
handler, and settle it by how the handler ended (definition.py's docstring is the contract).

    def on_order(delivery: Delivery) -> None:
        if already_done(delivery.message_id):   # at least once: make the handler idempotent
            return
        charge(delivery.body["order_id"])       # raises Retry, Reject, Requeue or anything

    Consumer(runtime, "orders.created", on_order).run(stop)

- The handler returns: ack.
- ``Retry`` or any other exception: while attempts remain, a copy waits in ``Q.retry.<n>``
  (the n-th retry's backoff as its TTL) and comes back to Q; after the last attempt the copy
  goes to ``Q.dlq`` with reason ``failed`` and the error.
- ``Reject``: to ``Q.dlq`` at once (reason ``rejected``). ``Requeue``: back to Q at once.
- A body that fails its schema (settings' ``schemas``): to ``Q.dlq`` (reason ``invalid``,
  the field in the error) and never handed to the handler.

Every copy is published with confirms, on a connection of its own, before the original is
acked: a consumer that dies in between leaves the original unacked, so the broker
redelivers it and at worst it is retried twice; nothing is lost. Delivery is therefore at
least once, and a handler should be idempotent by ``message_id``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kombu import Connection
from kombu import Consumer as KombuConsumer
from kombu import Queue as KombuQueue

from controlplane.errors import NotFound, Rejected, Unavailable
from controlplane.messaging import definition as defn
from controlplane.messaging.connection import MessagingRuntime, body_bytes, broker_errors, connect
from controlplane.messaging.validation import Schemas

log = logging.getLogger("coreplane.messaging.consumer")

JSON_TYPES = frozenset({"application/json", "application/x-json"})
DRAIN_TICK_S = 1.0  # how often run() looks at its stop event while the queue is idle
HEARTBEAT_S = 60  # a broker that vanished without closing the socket is noticed within ~2 of these
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 10.0
MAX_PREFETCH = 10000
MAX_DRAIN_MESSAGES = 1_000_000
MAX_DRAIN_S = 24 * 3600
# Properties a copy keeps. Not expiration: like the broker's own dead-lettering, a copy in a
# retry queue or the DLQ must not expire on the original's clock.
KEPT_PROPERTIES = ("message_id", "correlation_id", "timestamp", "type", "app_id", "user_id", "reply_to")


class Retry(Exception):
    """Try the message again later, through the queue's retry queues (a failure like any
    other exception, named for handlers that want to say so)."""


class Reject(Exception):
    """The message can never succeed: dead-letter it now, reason ``rejected``."""


class Requeue(Exception):
    """Put the message back in its queue now, untouched (not an attempt)."""


@dataclass(frozen=True)
class Delivery:
    """One message as the handler sees it. ``exchange`` and ``routing_key`` are where it
    was first published, also after retries; ``attempt`` is 1 for the first delivery."""

    body: Any  # JSON decoded for application/json, else the bytes
    headers: dict[str, Any]
    message_id: str | None
    routing_key: str
    exchange: str
    attempt: int
    redelivered: bool
    queue: str
    content_type: str | None = None
    correlation_id: str | None = None
    raw: bytes = field(default=b"", repr=False)


Handler = Callable[[Delivery], Any]


class Invalid(Exception):
    """The body cannot be read or fails its schema; the message is dead-lettered unread."""


class Consumer:
    """Consume ``queue`` (a queue of the runtime's definition) with ``handler``. One thread:
    ``run`` or ``drain``, not both at once."""

    def __init__(
        self, runtime: MessagingRuntime, queue: str, handler: Handler, *, prefetch: int | None = None
    ):
        found = runtime.definition.queue(queue)
        if found is None:
            raise Rejected.field(
                f"queue {queue!r} is not in the messaging definition", "queue", "unknown queue", kind="body"
            )
        prefetch = runtime.settings.messaging.prefetch if prefetch is None else prefetch
        if not 1 <= prefetch <= MAX_PREFETCH:
            raise Rejected.field(
                f"prefetch must be 1..{MAX_PREFETCH}", "prefetch", "out of range", kind="body"
            )
        self.runtime = runtime
        self.queue = found
        self.handler = handler
        self.prefetch = prefetch
        self.retry = defn.retry_of(found, runtime.settings.messaging.retry)
        self.schemas = Schemas(runtime.settings.messaging.schemas)
        self.settled = 0  # messages taken and settled (acked, retried, dead-lettered or requeued)
        self._publish_conn: Connection | None = None

    # -- running ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, reconnecting (bounded backoff, each logged) after
        the broker went away. A handler that is running finishes first."""
        failures = 0
        passing: tuple[type[BaseException], ...] = (*broker_errors(), Unavailable)
        while not stop.is_set():
            try:
                with connect(self.runtime.url, heartbeat=HEARTBEAT_S) as conn:
                    conn.ensure_connection(max_retries=1)
                    if failures:
                        log.warning(
                            "consumer of %s: reconnected after %d failure(s)", self.queue.name, failures
                        )
                    failures = 0
                    self._consume(conn, stop=stop, max_messages=None, deadline=None)
            except passing as exc:
                failures += 1
                self._drop_publisher()
                delay = min(RECONNECT_FIRST_S * 2 ** (failures - 1), RECONNECT_MAX_S)
                log.warning(
                    "consumer of %s: %s: %s; reconnecting in %.1f s (failure %d)",
                    self.queue.name, type(exc).__name__, exc, delay, failures,
                )  # fmt: skip
                stop.wait(delay)
        self._drop_publisher()

    def drain(self, *, max_messages: int, timeout_s: float) -> int:
        """Handle up to ``max_messages`` within ``timeout_s`` on one connection; returns how
        many were settled. Unavailable when the broker does not answer, NotFound when the
        queue does not exist (apply the definition first)."""
        if not 1 <= max_messages <= MAX_DRAIN_MESSAGES:
            raise Rejected.field(
                f"max_messages must be 1..{MAX_DRAIN_MESSAGES}", "max_messages", "out of range"
            )
        if not 0 < timeout_s <= MAX_DRAIN_S:
            raise Rejected.field(f"timeout_s must be in (0, {MAX_DRAIN_S}]", "timeout_s", "out of range")
        before = self.settled
        try:
            with connect(self.runtime.url, heartbeat=HEARTBEAT_S) as conn:
                self._consume(
                    conn, stop=None, max_messages=max_messages, deadline=time.monotonic() + timeout_s
                )
        except broker_errors() as exc:
            if getattr(exc, "code", None) == 404:
                raise NotFound(f"queue {self.queue.name!r} does not exist on the broker: {exc}") from exc
            raise Unavailable(f"RabbitMQ did not answer while consuming {self.queue.name!r}: {exc}") from exc
        finally:
            self._drop_publisher()
        return self.settled - before

    def _consume(
        self,
        conn: Connection,
        *,
        stop: threading.Event | None,
        max_messages: int | None,
        deadline: float | None,
    ) -> None:
        channel = conn.channel()
        prefetch = min(self.prefetch, max_messages) if max_messages else self.prefetch
        channel.basic_qos(0, prefetch, False)
        # no_declare: the topology declares the queue with its arguments; declaring it here
        # with other ones would fail, and a missing queue should say so, not appear empty.
        queue = KombuQueue(self.queue.name, no_declare=True)
        target = None if max_messages is None else self.settled + max_messages
        with KombuConsumer(channel, queues=[queue], on_message=self._on_message, auto_declare=False):
            while stop is None or not stop.is_set():
                if target is not None and self.settled >= target:
                    return
                wait = DRAIN_TICK_S if deadline is None else deadline - time.monotonic()
                if wait <= 0:
                    return
                with contextlib.suppress(TimeoutError):  # idle: look at stop and the clock again
                    conn.drain_events(timeout=min(wait, DRAIN_TICK_S))
                conn.heartbeat_check()

    # -- one message -----------------------------------------------------------------------

    def _on_message(self, message: Any) -> None:
        try:
            delivery = self._delivery(message)
        except Invalid as exc:
            self._dead_letter(message, "invalid", _capped(str(exc)), attempt=_attempt(message.headers or {}))
        else:
            self._handle(delivery, message)
        self.settled += 1

    def _handle(self, delivery: Delivery, message: Any) -> None:
        try:
            self.handler(delivery)
        except Requeue:
            message.requeue()
        except Reject as exc:
            self._dead_letter(message, "rejected", _error_text(exc), attempt=delivery.attempt)
        except Exception as exc:  # noqa: BLE001 - any failure of the handler is a failed attempt
            self._failed(delivery, message, exc)
        else:
            message.ack()

    def _failed(self, delivery: Delivery, message: Any, exc: Exception) -> None:
        error = _error_text(exc)
        if self.retry is None or delivery.attempt >= self.retry.attempts:
            self._dead_letter(message, "failed", error, attempt=delivery.attempt)
            return
        headers = _origin_headers(message) | {
            defn.HEADER_ATTEMPT: delivery.attempt + 1,
            defn.HEADER_ERROR: error,
        }
        self._republish(message, defn.retry_queue_name(self.queue.name, delivery.attempt), headers)
        message.ack()
        log.info(
            "message %s of %s: attempt %d failed (%s); retry %d", delivery.message_id, self.queue.name,
            delivery.attempt, error, delivery.attempt,
        )  # fmt: skip

    def _dead_letter(self, message: Any, reason: str, error: str, *, attempt: int) -> None:
        if not self.queue.dead_letter:
            # No Q.dlq to keep it: the broker drops it (or hands it to the queue's own
            # dead-letter exchange, if its arguments name one).
            log.error("message of %s dropped (%s, no dead-letter queue): %s", self.queue.name, reason, error)
            message.reject(requeue=False)
            return
        headers = _origin_headers(message) | {
            defn.HEADER_ATTEMPT: attempt,
            defn.HEADER_QUEUE: self.queue.name,
            defn.HEADER_REASON: reason,
            defn.HEADER_ERROR: error,
            defn.HEADER_FAILED_AT: datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        self._republish(message, defn.dlq_name(self.queue.name), headers)
        message.ack()
        log.warning("message of %s dead-lettered (%s): %s", self.queue.name, reason, error)

    def _delivery(self, message: Any) -> Delivery:
        headers = dict(message.headers or {})
        info = message.delivery_info or {}
        props = message.properties or {}
        exchange = str(headers.get(defn.HEADER_EXCHANGE, info.get("exchange", "")))
        routing_key = str(headers.get(defn.HEADER_ROUTING_KEY, info.get("routing_key", "")))
        raw = body_bytes(message)
        body = _decode(raw, message.content_type)
        try:
            self.schemas.check(exchange, routing_key, body)
        except Rejected as exc:
            raise Invalid(str(exc)) from None
        return Delivery(
            body=body,
            headers=headers,
            message_id=props.get("message_id"),
            routing_key=routing_key,
            exchange=exchange,
            attempt=_attempt(headers),
            redelivered=bool(info.get("redelivered")),
            queue=self.queue.name,
            content_type=message.content_type,
            correlation_id=props.get("correlation_id"),
            raw=raw,
        )

    # -- publishing copies -----------------------------------------------------------------

    def _republish(self, message: Any, queue: str, headers: dict[str, Any]) -> None:
        """Publish a copy of ``message`` to ``queue`` (default exchange, mandatory) and
        return once the broker confirmed it; any failure leaves the original unacked."""
        props = message.properties or {}
        kept = {name: props[name] for name in KEPT_PROPERTIES if props.get(name) is not None}
        try:
            channel = self._publisher().default_channel
            amqp_message = channel.prepare_message(
                body_bytes(message),
                priority=props.get("priority"),
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                headers=headers,
                properties=kept | {"delivery_mode": 2},
            )
            channel.basic_publish(
                amqp_message,
                exchange="",
                routing_key=queue,
                mandatory=True,
                confirm_timeout=self.runtime.settings.messaging.confirm_timeout_s,
            )
        except Exception as exc:
            # A failed publish may leave its confirm (or return) unread on the channel,
            # where the next publish would take it for its own: start afresh.
            self._drop_publisher()
            raise Unavailable(
                f"RabbitMQ did not confirm a copy to {queue!r}: {type(exc).__name__}: {exc}"
            ) from exc

    def _publisher(self) -> Connection:
        if self._publish_conn is None:
            conn = connect(self.runtime.url, confirms=True, heartbeat=0)
            conn.ensure_connection(max_retries=1)
            self._publish_conn = conn
        return self._publish_conn

    def _drop_publisher(self) -> None:
        conn, self._publish_conn = self._publish_conn, None
        if conn is not None:
            # Already broken, most likely: closing it is all that is left to do.
            with contextlib.suppress(Exception):
                conn.release()


def _decode(body: bytes, content_type: str | None) -> Any:
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime not in JSON_TYPES:
        return bytes(body)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Invalid(f"body: not valid JSON: {exc}") from None


def _attempt(headers: dict[str, Any]) -> int:
    try:
        return max(1, int(headers.get(defn.HEADER_ATTEMPT, 1)))
    except (TypeError, ValueError):
        return 1


def _origin_headers(message: Any) -> dict[str, Any]:
    """The message's headers with where it was first published, kept from the first attempt."""
    headers = dict(message.headers or {})
    info = message.delivery_info or {}
    headers.setdefault(defn.HEADER_EXCHANGE, info.get("exchange", ""))
    headers.setdefault(defn.HEADER_ROUTING_KEY, info.get("routing_key", ""))
    return headers


def _error_text(exc: BaseException) -> str:
    return _capped(f"{type(exc).__name__}: {exc}")


def _capped(text: str) -> str:
    return text if len(text) <= defn.ERROR_MAX else text[: defn.ERROR_MAX - 1] + "…"
