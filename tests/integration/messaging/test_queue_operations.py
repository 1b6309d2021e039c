"""Queue operations as actions, carried out by the leader's ``advance`` against a real
RabbitMQ (a vhost per test) and a real store: a move keeps order, properties and headers and
counts what it moved; a policy shows in the queue's effective policy and acts; delete,
declare and apply; each carried-out operation audited with who asked and why; without a
broker the plan fails them."""

from __future__ import annotations

from controlplane.actions import plans
from controlplane.clock import utcnow
from controlplane.messaging import operations, topology
from controlplane.messaging.connection import NOT_CONFIGURED
from controlplane.messaging.management import Management
from controlplane.ops.actions import ActionRequest, create_action
from controlplane.store.models import Action
from tests.support.messaging import runtime_for, settings_for
from tests.support.messaging_topology import audit_of, carried_out, publish, take
from tests.support.rabbitmq import queue_info, rabbit_vhost
from tests.support.stores import migrated_store
from tests.support.timing import until

DEFINITION = {"queues": [{"name": "orders", "type": "quorum"}, {"name": "orders.replay"}, {"name": "capped"}]}


def test_move_keeps_order_properties_and_headers_and_counts(services, tmp_path):
    with migrated_store("sqlite", tmp_path, services) as store, rabbit_vhost(services) as url:
        runtime = runtime_for(settings_for(services, url, DEFINITION))
        topology.apply(runtime, runtime.definition)
        ids = publish(url, "orders", 5, headers={"tenant": "acme"})

        action = carried_out(store, runtime, "mq.move", {"source": "orders", "destination": "orders.replay",
                                                          "limit": 3}, reason="replay the first three")  # fmt: skip
        assert action.state == "succeeded", action.result
        assert action.result["output"]["moved"] == 3
        assert topology.depth(url, "orders") == 2 and topology.depth(url, "orders.replay") == 3
        [row] = audit_of(store, action)
        assert row.actor == "user:tester" and row.details["reason"] == "replay the first three"

        # The rest, with a limit above what is left: the count is what really moved.
        rest = carried_out(store, runtime, "mq.move", {"source": "orders", "destination": "orders.replay",
                                                        "limit": 100})  # fmt: skip
        assert rest.result["output"]["moved"] == 2
        moved = take(url, "orders.replay")
        assert [m.body for m in moved] == [b"0", b"1", b"2", b"3", b"4"]
        assert [m.properties["message_id"] for m in moved] == ids
        assert all(m.properties["application_headers"]["tenant"] == "acme" for m in moved)
        assert [m.properties["application_headers"]["n"] for m in moved] == [0, 1, 2, 3, 4]
        assert {m.properties["content_type"] for m in moved} == {"text/plain"}
        assert {m.properties["delivery_mode"] for m in moved} == {2}


def test_a_move_to_a_missing_queue_fails_and_moves_nothing(services, tmp_path):
    with migrated_store("sqlite", tmp_path, services) as store, rabbit_vhost(services) as url:
        runtime = runtime_for(settings_for(services, url, DEFINITION))
        topology.apply(runtime, runtime.definition)
        publish(url, "orders", 2)
        action = carried_out(store, runtime, "mq.move", {"source": "orders", "destination": "nowhere"})
        assert action.state == "failed" and "no queue 'nowhere'" in action.result["error"]
        assert topology.depth(url, "orders") == 2
        assert audit_of(store, action) == []


def test_a_policy_is_applied_then_deleted(services, tmp_path):
    with migrated_store("sqlite", tmp_path, services) as store, rabbit_vhost(services) as url:
        runtime = runtime_for(settings_for(services, url, DEFINITION))
        topology.apply(runtime, runtime.definition)
        params = {"name": "cap", "pattern": "^capped$", "definition": {"max-length": 2}, "priority": 1}
        action = carried_out(store, runtime, "mq.policy", params)
        assert action.state == "succeeded", action.result

        def effective() -> dict | None:
            return queue_info(services, url, "capped").get("effective_policy_definition") or None

        assert until("the policy on the queue", effective, 20, 0.2) == {"max-length": 2}
        assert not queue_info(services, url, "orders.replay").get("effective_policy_definition")
        publish(url, "capped", 5)
        assert [m.body for m in take(url, "capped")] == [b"3", b"4"]  # max-length drops the head

        gone = carried_out(store, runtime, "mq.policy_delete", {"name": "cap"})
        assert gone.state == "succeeded"
        until("the policy gone", lambda: effective() is None, 20, 0.2)
        with Management.of(runtime) as api:
            assert api.policies() == []
        again = carried_out(store, runtime, "mq.policy_delete", {"name": "cap"})
        assert again.state == "failed" and "no policy 'cap'" in again.result["error"]


def test_declare_and_delete(services, tmp_path):
    with migrated_store("sqlite", tmp_path, services) as store, rabbit_vhost(services) as url:
        runtime = runtime_for(settings_for(services, url, {}))
        params = {"queue": {"name": "events", "type": "quorum", "retry": {"attempts": 2}},
                  "bindings": [{"exchange": "amq.topic", "queue": "events", "routing_key": "event.#"}]}  # fmt: skip
        declared = carried_out(store, runtime, "mq.declare", params)
        assert declared.state == "succeeded", declared.result
        assert set(declared.result["output"]["declared"]) == {"events", "events.dlq", "events.retry.1"}
        assert queue_info(services, url, "events")["type"] == "quorum"
        with Management.of(runtime) as api:
            assert any(b["source"] == "amq.topic" and b["routing_key"] == "event.#" for b in api.bindings())
        assert carried_out(store, runtime, "mq.declare", params).state == "succeeded"  # twice: no change

        other = {"queue": {"name": "events", "type": "classic"}}
        clash = carried_out(store, runtime, "mq.declare", other)
        assert (
            clash.state == "failed"
            and "'events' is on the broker with other settings" in clash.result["error"]
        )

        publish(url, "events", 1)
        careful = carried_out(store, runtime, "mq.delete", {"queue": "events", "if_empty": True})
        assert careful.state == "failed" and topology.depth(url, "events") == 1
        deleted = carried_out(store, runtime, "mq.delete", {"queue": "events"})
        assert deleted.state == "succeeded" and deleted.result["output"]["queue"] == "events"
        with Management.of(runtime) as api:
            assert "events" not in {q["name"] for q in api.queues(["name"])}
        tasks = carried_out(store, runtime, "mq.delete", {"queue": "celery"})
        assert tasks.state == "failed" and "belongs to the tasks area" in tasks.result["error"]


def test_apply_as_an_action_reports_the_diff(services, tmp_path):
    with migrated_store("sqlite", tmp_path, services) as store, rabbit_vhost(services) as url:
        runtime = runtime_for(settings_for(services, url, DEFINITION))
        action = carried_out(store, runtime, "mq.apply", {"prune": False, "force": False})
        assert action.state == "succeeded", action.result
        added = {d["name"] for d in action.result["output"]["diff"]["add"]}
        assert {"orders", "orders.dlq", "capped"} <= added
        given = {"queues": [{"name": "extra", "dead_letter": False}]}
        second = carried_out(store, runtime, "mq.apply", {"definition": given, "prune": True, "force": False})
        assert second.state == "succeeded" and second.result["output"]["definition"] == "given"
        with Management.of(runtime) as api:
            assert {q["name"] for q in api.queues(["name"])} == {"extra"}


def test_without_a_broker_the_plan_fails_them(services, tmp_path):
    with migrated_store("sqlite", tmp_path, services) as store:
        wanted = ActionRequest(kind="mq.delete", target=operations.TARGET, params={"queue": "q"}, reason="t")
        with store.sessions.begin() as session:
            action_id = create_action(session, wanted, actor="user:tester", now=utcnow())[0].id
        with store.sessions.begin() as session:
            plans.advance(session, now=utcnow())
        with store.sessions() as session:
            action = session.get(Action, action_id)
            assert action.state == "failed" and action.result["error"] == NOT_CONFIGURED
