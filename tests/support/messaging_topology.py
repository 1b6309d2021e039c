"""Helpers of the topology and queue-management tests: raw messages in and out of a test's
vhost (plain py-amqp through kombu's connection, so the tests do not go through the code they
test), the broker's definitions in a comparable form, and an action carried out on a store."""

from __future__ import annotations

import uuid
from typing import Any

from amqp import Message
from sqlalchemy import select

from controlplane.clock import utcnow
from controlplane.messaging import operations
from controlplane.messaging.connection import MessagingRuntime, connect
from controlplane.messaging.management import Management
from controlplane.ops.actions import ActionRequest, create_action
from controlplane.store.models import Action, AuditEntry
from tests.support.stores import Store


def publish(url: str, queue: str, count: int, *, headers: dict[str, Any] | None = None) -> list[str]:
    """``count`` persistent messages straight to ``queue`` (bodies "0", "1", ...; message ids
    returned), each with ``headers`` plus {"n": its number}."""
    ids = []
    with connect(url, confirms=True) as conn:
        channel = conn.channel()
        for n in range(count):
            message_id = f"m-{n}-{uuid.uuid4().hex[:6]}"
            message = Message(str(n).encode(), message_id=message_id, content_type="text/plain",
                              delivery_mode=2, application_headers={**(headers or {}), "n": n})  # fmt: skip
            channel.basic_publish(message, exchange="", routing_key=queue)
            ids.append(message_id)
    return ids


def take(url: str, queue: str, limit: int = 1000) -> list[Any]:
    """Up to ``limit`` messages got and acked from ``queue``, oldest first (py-amqp messages)."""
    out: list[Any] = []
    with connect(url, confirms=False) as conn:
        channel = conn.channel()
        while len(out) < limit and (message := channel.basic_get(queue=queue, no_ack=True)) is not None:
            out.append(message)
    return out


def topology_of(runtime: MessagingRuntime) -> dict[str, list]:
    """The vhost's exchanges, queues and bindings from its definitions export, sorted."""
    with Management.of(runtime) as api:
        found = api.definitions()

    def key(item: dict) -> str:
        return repr(sorted(item.items()))

    return {part: sorted(found.get(part, []), key=key) for part in ("exchanges", "queues", "bindings")}


def carried_out(
    store: Store, runtime: MessagingRuntime, kind: str, params: dict, reason: str = "a test"
) -> Action:
    """An mq.* action created as the console or the API would, then carried out by the
    leader's ``advance`` in its own round; the action as it ended."""
    wanted = ActionRequest(kind=kind, target=operations.TARGET, params=params, reason=reason)
    with store.sessions.begin() as session:
        action, _ = create_action(session, wanted, actor="user:tester", now=utcnow())
        action_id = action.id
    with store.sessions.begin() as session:
        assert operations.advance(session, runtime, now=utcnow()) == 1
    with store.sessions() as session:
        return session.get(Action, action_id)


def audit_of(store: Store, action: Action) -> list[AuditEntry]:
    """The audit rows the carried-out operation wrote (not the lifecycle's moves)."""
    with store.sessions() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == action.kind)).all()
        return [r for r in rows if (r.details or {}).get("action") == str(action.id)]
