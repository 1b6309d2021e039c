"""Where messaging's RabbitMQ is and how to reach it: the AMQP URL (kombu) and the management
API's base URL, from ``COREPLANE_MESSAGING__*`` or else ``COREPLANE_RABBITMQ__*``, and
``MessagingRuntime``, what a `coreplane serve` process keeps for the messaging routes, the
leader's operations and the dead-letter archiver. A broker that does not answer becomes
``Unavailable`` (503), never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from kombu import Connection

from controlplane.errors import Conflict, Unavailable
from controlplane.messaging.definition import Definition, parse
from controlplane.settings import Settings

NOT_CONFIGURED = (
    "no RabbitMQ is configured for messaging: set COREPLANE_MESSAGING__URL or COREPLANE_RABBITMQ__URL"
)
CONNECT_TIMEOUT_S = 5.0


def amqp_url(settings: Settings) -> str | None:
    return settings.messaging.url or settings.rabbitmq.url


def management_url(settings: Settings) -> str | None:
    return settings.messaging.management_url or settings.rabbitmq.management_url


def vhost_of(url: str) -> str:
    """The virtual host an AMQP URL names ("/" when it names none, as kombu reads it)."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def connect(url: str, *, confirms: bool = True, heartbeat: float = 0) -> Connection:
    """A kombu connection (not yet opened) with publisher confirms on, so a publish returns
    only once the broker has the message."""
    return Connection(
        url,
        connect_timeout=CONNECT_TIMEOUT_S,
        heartbeat=heartbeat,
        transport_options={"confirm_publish": confirms},
    )


def body_bytes(message: Any) -> bytes:
    """A received message's body as bytes: py-amqp hands over a str when the message names
    a content_encoding (kombu's JSON serializer does), bytes otherwise."""
    body = message.body
    if isinstance(body, str):
        return body.encode(message.content_encoding or "utf-8")
    return bytes(body or b"")


def broker_errors() -> tuple[type[BaseException], ...]:
    """What a broker that is down or refusing raises through kombu or amqp."""
    from amqp.exceptions import AMQPError  # type: ignore[import-untyped]  # no py.typed
    from kombu.exceptions import KombuError

    return (OSError, AMQPError, KombuError)


@contextmanager
def reaching(what: str) -> Iterator[None]:
    """Turn a broker error inside into Unavailable naming ``what`` was being done."""
    try:
        yield
    except broker_errors() as exc:
        raise Unavailable(f"RabbitMQ did not answer while {what}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class MessagingRuntime:
    """Messaging as one `coreplane serve` process sees it: its settings (the whole tree, for
    the S3 server backups go to) and the definition they give, parsed once at start."""

    settings: Settings
    definition: Definition

    @property
    def url(self) -> str:
        return amqp_url(self.settings) or ""

    @property
    def management_url(self) -> str | None:
        return management_url(self.settings)

    @property
    def vhost(self) -> str:
        return vhost_of(self.url)


def runtime(settings: Settings) -> MessagingRuntime | None:
    """The runtime when a broker is configured, else None (`make run` has none). A bad
    definition in the settings stops the process at start with the field to fix."""
    if not amqp_url(settings):
        return None
    definition = parse(settings.messaging.definition, field="COREPLANE_MESSAGING__DEFINITION")
    return MessagingRuntime(settings, definition)


def require(runtime: MessagingRuntime | None) -> MessagingRuntime:
    """The runtime, or Conflict (409) saying how to configure one."""
    if runtime is None:
        raise Conflict(NOT_CONFIGURED)
    return runtime
