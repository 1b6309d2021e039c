"""Publishing for applications: persistent messages with publisher confirms, checked before
they leave (exchange, routing key, size, schema) and refused when the broker cannot route or
will not take them.

    from controlplane.messaging.publisher import publish
    message_id = publish("orders", "order.created.eu", {"id": 7, "lines": [...]})

``publish`` returns once RabbitMQ confirmed the message: it is then in every queue it was
routed to (on disk for a durable queue). What it refuses, and how:

- ``Rejected`` (422) naming the field: an exchange the definition does not hold, a bad routing
  key, priority, TTL, header or message id, a body failing its schema (``body.<path>``), a
  message no queue is bound for (``routing_key``: unroutable);
- ``TooLarge`` (413): a body over ``max_body_bytes``, headers over 64 KiB;
- ``BrokerRefused`` (409): the broker nacked it (a full queue with ``reject-publish``) or
  closed the channel on it (an exchange not declared on the broker yet);
- ``Unavailable`` (503): no broker within the reconnect bound, or no confirm in
  ``confirm_timeout_s``.

A connection lost mid-publish is reopened (within ``confirm_timeout_s``) and the message sent
again with the same message id: delivery is at least once, and a consumer that must not
process a message twice remembers the ids it has seen.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from amqp.exceptions import ChannelError, MessageNacked  # type: ignore[import-untyped]  # no py.typed
from kombu import Connection

from controlplane.errors import Conflict, Rejected, TooLarge, Unavailable
from controlplane.messaging.connection import MessagingRuntime, broker_errors, connect, require, runtime
from controlplane.messaging.definition import BUILTIN_EXCHANGES, ROUTING_KEY_MAX
from controlplane.messaging.validation import Schemas

JSON = "application/json"
MAX_PRIORITY = 255  # AMQP's octet; a queue caps it at its own x-max-priority (at most 255)
MAX_EXPIRATION_MS = 2**31 - 1
MAX_HEADERS_BYTES = 64 * 1024
MAX_SHORT = 255  # AMQP short strings: message id, correlation id, content type, header names


class BrokerRefused(Conflict):
    """RabbitMQ would not take the message: a nack, or the channel closed on it."""


@dataclass
class Outgoing:
    """A message checked and encoded, ready for ``basic_publish``."""

    exchange: str
    routing_key: str
    body: bytes
    content_type: str
    headers: dict[str, Any]
    priority: int | None
    properties: dict[str, Any]

    @property
    def message_id(self) -> str:
        return str(self.properties["message_id"])


@dataclass
class _Link:
    """One thread's connection and channel, and what the broker returned on it."""

    connection: Connection
    channel: Any
    returned: list[tuple[int, str]] = field(default_factory=list)


class Publisher:
    """Publishes to the runtime's broker. Thread-safe: each thread gets its own connection
    and confirmed channel (a confirm is awaited on the channel, so two threads on one would
    queue behind each other's round trip: 4 threads sent ~1,700 persistent 1 KB messages/s
    with a connection each, ~790 one at a time behind a lock), closed together by ``close()``."""

    def __init__(self, runtime: MessagingRuntime, *, schemas: Schemas | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings.messaging
        self.schemas = schemas if schemas is not None else Schemas(self.settings.schemas)
        self._exchanges = {e.name: e.type for e in runtime.definition.exchanges}
        self._local = threading.local()
        self._links: list[_Link] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: Any,
        *,
        headers: dict[str, Any] | None = None,
        priority: int | None = None,
        expiration_ms: int | None = None,
        message_id: str | None = None,
        content_type: str = JSON,
        correlation_id: str | None = None,
    ) -> str:
        """Send one persistent message and return its id once the broker confirmed it."""
        outgoing = self.prepare(
            exchange, routing_key, body, headers=headers, priority=priority, expiration_ms=expiration_ms,
            message_id=message_id, content_type=content_type, correlation_id=correlation_id,
        )  # fmt: skip
        self.send(outgoing)
        return outgoing.message_id

    def prepare(
        self,
        exchange: str,
        routing_key: str,
        body: Any,
        *,
        headers: dict[str, Any] | None = None,
        priority: int | None = None,
        expiration_ms: int | None = None,
        message_id: str | None = None,
        content_type: str = JSON,
        correlation_id: str | None = None,
    ) -> Outgoing:
        """Check and encode a message (Rejected naming the field); nothing is sent."""
        self._check_exchange(exchange)
        _check_routing_key(self._exchanges.get(exchange, _builtin_type(exchange)), routing_key)
        payload, content_type = _encoded(body, content_type)
        if len(payload) > self.settings.max_body_bytes:
            raise TooLarge.field(
                f"body: {len(payload)} bytes, over the {self.settings.max_body_bytes}-byte limit "
                "(COREPLANE_MESSAGING__MAX_BODY_BYTES)", "body", "too large", kind="body",
            )  # fmt: skip
        if self.schemas.matches(exchange, routing_key):
            self.schemas.check(exchange, routing_key, payload)
        properties: dict[str, Any] = {
            "delivery_mode": 2,
            "message_id": _short("message_id", message_id) if message_id is not None else uuid.uuid4().hex,
            "timestamp": int(time.time()),  # AMQP's: whole seconds since the epoch
        }
        if priority is not None:
            priority = _bounded("priority", priority, 0, MAX_PRIORITY)
        if expiration_ms is not None:
            properties["expiration"] = str(_bounded("expiration_ms", expiration_ms, 0, MAX_EXPIRATION_MS))
        if correlation_id is not None:
            properties["correlation_id"] = _short("correlation_id", correlation_id)
        return Outgoing(exchange, routing_key, payload, content_type, _headers(headers), priority, properties)

    def send(self, outgoing: Outgoing) -> None:
        """Publish ``outgoing`` and wait for its confirm; on a lost connection reconnect and
        send it again (same message id) until ``confirm_timeout_s`` has passed."""
        deadline = time.monotonic() + self.settings.confirm_timeout_s
        while True:
            link = self._link(deadline)
            try:
                self._publish_on(link, outgoing, deadline)
            except broker_errors() as exc:  # the connection went: a refusal is raised as such
                self._drop(link)
                if time.monotonic() >= deadline:
                    raise Unavailable(_unavailable(outgoing, exc)) from exc
                continue
            return

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            _close(link)
        self._local = threading.local()

    def _publish_on(self, link: _Link, outgoing: Outgoing, deadline: float) -> None:
        link.returned.clear()
        message = link.channel.prepare_message(
            # No priority is priority 0 (what a priority queue gives a message without one);
            # py-amqp cannot leave the property out once the argument is there.
            outgoing.body, outgoing.priority or 0, outgoing.content_type, _encoding(outgoing.content_type),
            outgoing.headers, outgoing.properties,
        )  # fmt: skip
        try:
            # mandatory: an unroutable message comes back as basic.return, which RabbitMQ sends
            # before its basic.ack; py-amqp dispatches it to _returned while it waits for that
            # ack, so once basic_publish returns, link.returned says whether it was routed.
            link.channel.basic_publish(
                message, exchange=outgoing.exchange, routing_key=outgoing.routing_key, mandatory=True,
                confirm_timeout=max(0.001, deadline - time.monotonic()),
            )  # fmt: skip
        except MessageNacked:
            raise BrokerRefused(
                f"RabbitMQ refused the message (nack) sent to {_where(outgoing)}: a queue it routes to "
                "is full and rejects publishes (x-overflow reject-publish), or the broker could not "
                f"store it; message id {outgoing.message_id}"
            ) from None
        except ChannelError as exc:
            self._drop(link)  # the broker closed the channel
            raise BrokerRefused(f"RabbitMQ refused the message sent to {_where(outgoing)}: {exc}") from exc
        except TimeoutError as exc:
            self._drop(link)  # a late ack would be read as the next message's
            raise Unavailable(
                f"RabbitMQ did not confirm the message sent to {_where(outgoing)} within "
                f"{self.settings.confirm_timeout_s:g} s; it may or may not be queued (message id "
                f"{outgoing.message_id})"
            ) from exc
        if link.returned:
            code, text = link.returned[0]
            raise Rejected.field(
                f"routing_key: no queue is bound to {_where(outgoing)} (RabbitMQ returned it: {code} "
                f"{text}); nothing was enqueued", "routing_key", "unroutable", kind="body",
            )  # fmt: skip

    def _link(self, deadline: float) -> _Link:
        link: _Link | None = getattr(self._local, "link", None)
        if link is not None and link.connection.connected:
            return link
        if link is not None:
            self._drop(link)
        return self._connect(deadline)

    def _connect(self, deadline: float) -> _Link:
        connection = connect(self.runtime.url, confirms=True)
        try:
            connection.ensure_connection(
                max_retries=100, interval_start=0.1, interval_step=0.5, interval_max=2.0,
                timeout=max(0.1, deadline - time.monotonic()),
            )  # fmt: skip
            link = _Link(connection, connection.channel())
        except broker_errors() as exc:
            connection.release()
            raise Unavailable(f"RabbitMQ at {_safe(self.runtime.url)} cannot be reached: {exc}") from exc
        link.channel.events["basic_return"].add(
            lambda exc, exchange, routing_key, message: link.returned.append((exc.reply_code, exc.reply_text))
        )
        self._local.link = link
        with self._lock:
            self._links.append(link)
        return link

    def _drop(self, link: _Link) -> None:
        if getattr(self._local, "link", None) is link:
            self._local.link = None
        with self._lock:
            if link in self._links:
                self._links.remove(link)
        _close(link)

    def _check_exchange(self, exchange: str) -> None:
        if exchange in self._exchanges or exchange in BUILTIN_EXCHANGES or exchange.startswith("amq."):
            return
        raise Rejected.field(
            f"exchange: {exchange!r} is not in the messaging definition (COREPLANE_MESSAGING__DEFINITION); "
            f"declared: {sorted(self._exchanges) or 'none'}", "exchange", "unknown exchange", kind="body",
        )  # fmt: skip


def _builtin_type(exchange: str) -> str:
    return {
        "amq.topic": "topic",
        "amq.fanout": "fanout",
        "amq.headers": "headers",
        "amq.match": "headers",
    }.get(exchange, "direct")


def _check_routing_key(exchange_type: str, routing_key: str) -> None:
    def refuse(reason: str) -> Rejected:
        return Rejected.field(f"routing_key: {reason}", "routing_key", reason, kind="body")

    if not isinstance(routing_key, str):
        raise refuse("must be a string")
    if len(routing_key.encode()) > ROUTING_KEY_MAX:
        raise refuse(f"longer than {ROUTING_KEY_MAX} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in routing_key):
        raise refuse("holds a control character")
    if exchange_type == "topic" and any(word in ("*", "#") for word in routing_key.split(".")):
        # Wildcards belong to bindings; a published key holding them matches only literally.
        raise refuse("'*' and '#' are binding wildcards, not part of a message's key")


def _encoded(body: Any, content_type: str) -> tuple[bytes, str]:
    """Bytes go as they are with their content type; anything else as compact JSON."""
    content_type = _short("content_type", content_type)
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body), content_type
    if content_type != JSON and not content_type.endswith("+json"):
        raise Rejected.field(
            f"content_type: {content_type!r} needs a bytes body; a value is sent as JSON",
            "content_type", "needs bytes", kind="body",
        )  # fmt: skip
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise Rejected.field(
            f"body: cannot be sent as JSON: {exc}", "body", "not JSON", kind="body"
        ) from None
    return text.encode(), content_type


def _encoding(content_type: str) -> str | None:
    """utf-8 for JSON (what kombu's own JSON messages say, so its consumers decode them)."""
    return "utf-8" if content_type == JSON or content_type.endswith("+json") else None


def _headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    if not headers:
        return {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and 0 < len(k) <= MAX_SHORT for k in headers
    ):
        raise Rejected.field(
            "headers: an object with names of 1 to 255 characters", "headers", "bad", kind="body"
        )
    try:
        size = len(json.dumps(headers, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise Rejected.field(
            f"headers: must be plain JSON: {exc}", "headers", "not JSON", kind="body"
        ) from None
    if size > MAX_HEADERS_BYTES:
        raise TooLarge.field(
            f"headers: {size} bytes of JSON, over the {MAX_HEADERS_BYTES}-byte limit", "headers", "too large",
            kind="body",
        )  # fmt: skip
    return headers


def _bounded(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Rejected.field(
            f"{name}: must be a whole number from {low} to {high}, not {value!r}",
            name,
            "out of range",
            kind="body",
        )
    return value


def _short(name: str, value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value.encode()) <= MAX_SHORT or not value.isprintable():
        raise Rejected.field(
            f"{name}: 1 to {MAX_SHORT} bytes of printable text, not {str(value)[:60]!r}",
            name,
            "bad",
            kind="body",
        )
    return value


def _where(outgoing: Outgoing) -> str:
    return f"exchange {outgoing.exchange!r} with routing key {outgoing.routing_key!r}"


def _unavailable(outgoing: Outgoing, exc: BaseException) -> str:
    return (
        f"RabbitMQ did not answer while publishing to {_where(outgoing)}: {type(exc).__name__}: {exc}; "
        f"it may or may not be queued (message id {outgoing.message_id})"
    )


def _safe(url: str) -> str:
    """The URL without its password, for an error message."""
    head, _, tail = url.rpartition("@")
    return ("amqp://…@" + tail) if head else url


def _close(link: _Link) -> None:
    try:
        link.connection.release()
    except broker_errors():
        pass  # already gone: nothing left to close


# One Publisher per process for applications' module-level publish(): built on first use
# from the environment's settings, again in a forked child (a connection is not fork-safe).
_default: tuple[int, Publisher] | None = None
_default_lock = threading.Lock()


def default_publisher() -> Publisher:
    """The process's Publisher (Conflict when no broker is configured)."""
    global _default
    with _default_lock:
        if _default is None or _default[0] != os.getpid():
            from controlplane.settings import load_settings

            _default = (os.getpid(), Publisher(require(runtime(load_settings()))))
        return _default[1]


def publish(exchange: str, routing_key: str, body: Any, **options: Any) -> str:
    """``Publisher.publish`` on the process's publisher (settings from COREPLANE_*)."""
    return default_publisher().publish(exchange, routing_key, body, **options)
