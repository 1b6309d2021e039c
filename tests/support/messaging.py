"""Messaging tests' shared pieces: settings and a runtime pointed at a test's own virtual
host, and the definition declared there.

    with rabbit_vhost(services) as url:
        settings = settings_for(services, url, {"queues": [{"name": "orders"}]})
        runtime = declare_definition(settings)        # the queues exist now
        Publisher(runtime).publish("", "orders", {"id": 1})
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from controlplane.messaging.connection import MessagingRuntime, body_bytes, connect
from controlplane.messaging.definition import expand, parse
from controlplane.messaging.topology import declare
from controlplane.settings import Settings
from tests.support.processes import coreplane_env, free_port, stop
from tests.support.serve import ControlPlane, migrate, start_serve
from tests.support.services import ROOT


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
    dead-letter queues included), through the topology module, and return the runtime."""
    runtime = runtime_for(settings)
    declare(runtime.url, expand(runtime.definition, settings.messaging.retry))
    return runtime


def depth(url: str, queue: str) -> int:
    """Messages ready in ``queue`` now, from the broker itself (a passive declare), not the
    management API's statistics, which lag by seconds."""
    with connect(url, confirms=False) as conn:
        return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)


def take(url: str, queue: str, limit: int = 1000) -> list[Any]:
    """Up to ``limit`` messages got (and acked) from ``queue``, oldest first, as py-amqp
    messages (``.body`` as bytes, ``.properties``, ``.headers``)."""
    out: list[Any] = []
    with connect(url, confirms=False) as conn:
        channel = conn.default_channel
        while len(out) < limit:
            message = channel.basic_get(queue=queue, no_ack=True)
            if message is None:
                break
            message.body = body_bytes(message)  # py-amqp decodes a body that names its encoding
            out.append(message)
    return out


def messaging_env(settings: Settings) -> dict[str, str]:
    """``settings``' messaging as `coreplane serve` variables (lower-case names)."""
    found = settings.messaging
    return {
        "messaging__url": found.url or "",
        "messaging__definition": json.dumps(found.definition),
        "messaging__schemas": json.dumps(found.schemas),
        "messaging__max_body_bytes": str(found.max_body_bytes),
        "messaging__confirm_timeout_s": str(found.confirm_timeout_s),
    }


@contextmanager
def messaging_serving(settings: Settings, tmp_path: Path, **extra: str) -> Iterator[ControlPlane]:
    """`coreplane serve` on a fresh SQLite store in ``tmp_path``, with the real services and
    ``settings``' messaging (a test's vhost), ``extra`` as more COREPLANE_* variables (lower-case
    names). The repository is on its PYTHONPATH, so schemas may name models under tests/."""
    port, token = free_port(), secrets.token_urlsafe(32)
    values = messaging_env(settings) | extra
    env = coreplane_env(True, database_url=f"sqlite:///{tmp_path}/store.db", admin_token=token,
                        server__port=str(port), **values)  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    migrate(env)
    log = tmp_path / "serve.log"
    process = start_serve(env, log)
    try:
        yield ControlPlane(f"http://127.0.0.1:{port}", token, env, log)
    finally:
        stop(process)
