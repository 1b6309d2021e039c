"""Messaging tests' shared pieces: settings and a runtime pointed at a test's own virtual
host, and the definition declared there.

    with rabbit_vhost(services) as url:
        settings = settings_for(services, url, {"queues": [{"name": "orders"}]})
        runtime = declare_definition(settings)        # the queues exist now
        Publisher(runtime).publish("", "orders", {"id": 1})
"""

from __future__ import annotations

from typing import Any

from controlplane.messaging.connection import MessagingRuntime, connect
from controlplane.messaging.definition import Declared, expand, parse
from controlplane.settings import Settings


def settings_for(
    services: Settings, url: str, definition: dict[str, Any] | None = None, **messaging: Any
) -> Settings:
    """``services`` with messaging on the AMQP ``url`` (a test's vhost), ``definition`` and
    any other messaging setting given by keyword (``schemas=[...]``, ``max_body_bytes=...``)."""
    update = {"url": url, "definition": definition or {}, **messaging}
    return services.model_copy(update={"messaging": services.messaging.model_copy(update=update)})


def runtime_for(settings: Settings) -> MessagingRuntime:
    """The runtime `coreplane serve` would build from ``settings`` (definition parsed)."""
    return MessagingRuntime(settings, parse(settings.messaging.definition))


def declare_definition(settings: Settings) -> MessagingRuntime:
    """Declare everything ``settings``' definition expands to on its broker (retry and
    dead-letter queues included) and return the runtime."""
    runtime = runtime_for(settings)
    declare(runtime.url, expand(runtime.definition, settings.messaging.retry))
    return runtime


def declare(url: str, declared: list[Declared]) -> None:
    """Declare exchanges, queues and bindings as listed, on one channel. Plain kombu, so the
    tests of the parts that need queues do not depend on the topology module they may be
    testing."""
    with connect(url, confirms=False) as conn:
        channel = conn.default_channel
        for item in declared:
            if item.kind == "exchange":
                channel.exchange_declare(
                    exchange=item.name, type=item.type, durable=item.durable,
                    auto_delete=item.auto_delete, arguments=item.arguments,
                )  # fmt: skip
            elif item.kind == "queue":
                channel.queue_declare(
                    queue=item.name,
                    durable=item.durable,
                    auto_delete=item.auto_delete,
                    arguments=item.arguments,
                )
            else:
                channel.queue_bind(
                    queue=item.destination, exchange=item.source, routing_key=item.routing_key,
                    arguments=item.arguments,
                )  # fmt: skip
