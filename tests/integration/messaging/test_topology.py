"""The topology against a real RabbitMQ, each test in its own virtual host: declaring twice
changes nothing; a definition change shows as a diff, then apply makes the broker match it;
a queue whose arguments changed is recreated, refused while it holds messages unless forced;
prune removes only what the definition lacks and never the tasks area's queues; the CLI shows
the diff and applies it once confirmed, audited."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import select

from controlplane.errors import Conflict, NotFound
from controlplane.messaging import topology
from controlplane.messaging.definition import expand, parse
from controlplane.messaging.management import Management
from controlplane.store.db import make_engine
from controlplane.store.models import AuditEntry
from tests.support.messaging import runtime_for, settings_for
from tests.support.messaging_topology import publish, topology_of
from tests.support.processes import coreplane_bin, coreplane_env
from tests.support.rabbitmq import queue_info, rabbit_vhost
from tests.support.serve import migrate

ORDERS = {
    "exchanges": [{"name": "orders", "type": "topic"}, {"name": "fan", "type": "fanout"}],
    "queues": [
        {"name": "orders.created", "type": "quorum", "retry": {"attempts": 3, "backoff_s": 0.5}},
        {"name": "jobs", "max_priority": 5, "message_ttl_ms": 60000},
        {"name": "audit", "dead_letter": False},
    ],
    "bindings": [
        {"exchange": "orders", "queue": "orders.created", "routing_key": "order.created.*"},
        {"exchange": "fan", "queue": "audit"},
    ],
}


def _names(items) -> set[tuple[str, str]]:
    return {(d.kind, d.name) for d in items}


def test_declaring_twice_changes_nothing(services):
    with rabbit_vhost(services) as url:
        runtime = runtime_for(settings_for(services, url, ORDERS))
        wanted = expand(runtime.definition, runtime.settings.messaging.retry)
        topology.declare(runtime, wanted)
        first = topology_of(runtime)
        assert {q["name"] for q in first["queues"]} == {
            "orders.created", "orders.created.dlq", "orders.created.retry.1", "orders.created.retry.2",
            "jobs", "jobs.dlq", "audit",
        }  # fmt: skip
        topology.declare(runtime, wanted)
        assert topology_of(runtime) == first
        assert topology.plan(runtime, runtime.definition).empty
        assert queue_info(services, url, "orders.created")["type"] == "quorum"
        assert queue_info(services, url, "orders.created.retry.2")["arguments"]["x-message-ttl"] == 1000


def test_a_definition_change_is_a_diff_first_and_apply_makes_the_broker_match(services):
    with rabbit_vhost(services) as url:
        runtime = runtime_for(settings_for(services, url, ORDERS))
        before = topology.plan(runtime, runtime.definition)
        assert ("queue", "jobs") in _names(before.add) and not before.change
        applied = topology.apply(runtime, runtime.definition)
        assert _names(applied.add) == _names(before.add)
        assert topology.plan(runtime, runtime.definition).empty

        changed = {
            **ORDERS,
            "queues": [*ORDERS["queues"][:1], {"name": "jobs", "max_priority": 9, "message_ttl_ms": 60000},
                       {"name": "audit", "dead_letter": False}, {"name": "invoices", "type": "quorum"}],
            "bindings": [*ORDERS["bindings"], {"exchange": "orders", "queue": "invoices", "routing_key": "invoice.#"}],
        }  # fmt: skip
        v2 = parse(changed)
        found = topology.plan(runtime, v2)
        assert {"invoices", "invoices.dlq"} <= {d.name for d in found.add if d.kind == "queue"}
        assert any(d.kind == "binding" and d.destination == "invoices" for d in found.add)
        assert [(c.wanted.name, c.recreate) for c in found.change] == [("jobs", True)]
        assert found.change[0].differences["arguments"][1]["x-max-priority"] == 9
        # Shown only: nothing changed on the broker yet.
        assert queue_info(services, url, "jobs")["arguments"]["x-max-priority"] == 5

        topology.apply(runtime, v2)
        assert topology.plan(runtime, v2).empty
        assert queue_info(services, url, "jobs")["arguments"]["x-max-priority"] == 9
        assert queue_info(services, url, "invoices")["type"] == "quorum"
        # The bindings of the recreated queue came back with it.
        with Management.of(runtime) as api:
            bound = {(b["source"], b["destination"]) for b in api.bindings() if b["source"]}
        assert ("coreplane.dead", "jobs.dlq") in bound and ("orders", "invoices") in bound


def test_recreating_a_queue_that_holds_messages_is_refused_unless_forced(services):
    with rabbit_vhost(services) as url:
        runtime = runtime_for(settings_for(services, url, ORDERS))
        topology.apply(runtime, runtime.definition)
        publish(url, "jobs", 3)
        v2 = parse({"queues": [{"name": "jobs", "max_priority": 9, "message_ttl_ms": 60000},
                               {"name": "later"}]})  # fmt: skip
        with pytest.raises(Conflict) as refused:
            topology.apply(runtime, v2)
        assert "queue 'jobs' holds 3 message(s)" in str(refused.value) and "force" in str(refused.value)
        # Refused before anything changed: the new queue was not declared either.
        assert queue_info(services, url, "jobs")["arguments"]["x-max-priority"] == 5
        assert topology.depth(url, "jobs") == 3
        with Management.of(runtime) as api, pytest.raises(NotFound):
            api.queue("later")

        topology.apply(runtime, v2, force=True)
        assert queue_info(services, url, "jobs")["arguments"]["x-max-priority"] == 9
        assert topology.depth(url, "jobs") == 0


def test_prune_removes_only_what_the_definition_lacks_and_never_the_tasks_queues(services):
    with rabbit_vhost(services) as url:
        settings = settings_for(services, url, ORDERS)
        runtime = runtime_for(settings)
        topology.apply(runtime, runtime.definition)
        stray = parse({"exchanges": [{"name": "stray.x"}], "queues": [{"name": "stray", "dead_letter": False}],
                       "bindings": [{"exchange": "stray.x", "queue": "stray", "routing_key": "k"}]})  # fmt: skip
        tasks = parse({"queues": [{"name": name, "dead_letter": False} for name in
                                  (*settings.tasks.queues, settings.tasks.events_queue)]})  # fmt: skip
        for extra in (stray, tasks):
            topology.declare(runtime, expand(extra, settings.messaging.retry))
        publish(url, "stray", 1)

        kept = topology.apply(runtime, runtime.definition)  # no prune: listed, left alone
        assert _names(kept.remove) == {
            ("exchange", "stray.x"),
            ("queue", "stray"),
            ("binding", "stray.x/stray/k"),
        }
        assert topology.depth(url, "stray") == 1
        with pytest.raises(Conflict, match="queue 'stray' holds 1 message"):
            topology.apply(runtime, runtime.definition, prune=True)
        assert topology.depth(url, "stray") == 1

        topology.apply(runtime, runtime.definition, prune=True, force=True)
        with Management.of(runtime) as api:
            queues = {q["name"] for q in api.queues(["name"])}
            exchanges = {e["name"] for e in api.exchanges()}
        assert "stray" not in queues and "stray.x" not in exchanges
        assert {*settings.tasks.queues, settings.tasks.events_queue, "jobs", "orders.created.dlq"} <= queues
        assert {"orders", "fan", "coreplane.dead", "amq.topic"} <= exchanges
        assert topology.plan(runtime, runtime.definition).empty


def test_the_cli_shows_the_diff_and_applies_it_once_confirmed(services, tmp_path):
    with rabbit_vhost(services) as url:
        env = coreplane_env(True, database_url=f"sqlite:///{tmp_path}/store.db", messaging__url=url,
                            messaging__definition=json.dumps(ORDERS))  # fmt: skip
        migrate(env)

        def coreplane(*args: str, answer: str = "") -> subprocess.CompletedProcess:
            return subprocess.run([coreplane_bin(), "messaging", *args], env=env, input=answer,
                                  capture_output=True, text=True, timeout=60)  # fmt: skip

        shown = coreplane("diff")
        assert shown.returncode == 0, shown.stderr
        assert (
            "+ queue jobs" in shown.stdout
            and "+ binding orders/orders.created/order.created.*" in shown.stdout
        )
        declined = coreplane("apply", answer="n\n")
        assert declined.returncode == 1 and "+ queue jobs" in declined.stdout
        runtime = runtime_for(settings_for(services, url, ORDERS))
        assert not topology.plan(runtime, runtime.definition).empty

        applied = coreplane("apply", "--yes")
        assert applied.returncode == 0, applied.stderr
        assert "applied: " in applied.stdout
        assert topology.plan(runtime, runtime.definition).empty
        engine = make_engine(env["COREPLANE_DATABASE_URL"])
        with engine.connect() as conn:
            rows = conn.execute(select(AuditEntry.actor).where(AuditEntry.action == "mq.apply")).all()
        engine.dispose()
        assert [r.actor for r in rows] == ["cli"]
