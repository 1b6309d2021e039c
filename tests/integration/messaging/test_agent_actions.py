"""messaging.replay and queue.purge end to end: a real `coreplane serve` archiving a test's
vhost, a real `coreplane agent` whose rabbitmq target carries the vhost's AMQP URL, and
RabbitMQ. A replay puts the message back where it was first published (same body and
message id, x-coreplane-replayed set, the death's headers gone) and audits; a purge empties
the queue and says how many messages went."""

from __future__ import annotations

from controlplane.messaging import definition as d
from tests.support.messaging import depth, take
from tests.support.messaging_dead import dead_letter, dead_letter_stack, publish
from tests.support.task_control import finished_action, token_of
from tests.support.timing import until


def _by_message_id(items: list[dict]) -> dict[str, dict]:
    return {r["message_id"]: r for r in items}


def test_replay_one_then_a_filtered_set_back_to_their_queues(tmp_path, services):
    with dead_letter_stack(services, tmp_path, agent=True) as stack, stack.api() as admin:
        operator = stack.api(token_of(admin, "operator"))
        dead_letter(stack.url, "orders", b'{"n": 1}', message_id="m-1")
        dead_letter(stack.url, "orders", b'{"n": 2}', message_id="m-2")
        dead_letter(stack.url, "orders", b'{"n": 3}', message_id="m-3", reason="invalid")
        # First published through the default exchange: replayed straight to its queue.
        dead_letter(stack.url, "orders", b'{"n": 4}', message_id="m-4", exchange="", routing_key="orders")
        rows = _by_message_id(stack.archived(admin, 4, queue="orders"))

        one = operator.post(
            "/messaging/dead-letters/replay", json={"ids": [rows["m-1"]["id"]], "reason": "fixed"}
        )
        assert one.status_code == 202, one.text
        done = finished_action(admin, one.json()["id"], timeout_s=60)
        assert done["state"] == "succeeded", done
        until("the replayed message in orders", lambda: depth(stack.url, "orders") == 1, 10, 0.1)
        (back,) = take(stack.url, "orders")
        assert back.body == b'{"n": 1}' and back.properties["message_id"] == "m-1"
        headers = back.headers
        assert headers["x-coreplane-replayed"] == 1
        assert d.HEADER_REASON not in headers and d.HEADER_ERROR not in headers and "x-death" not in headers
        row = admin.get(f"/messaging/dead-letters/{rows['m-1']['id']}").json()
        assert (row["state"], row["replay_count"]) == ("replayed", 1) and row["updated_by"].endswith(
            "operator-test"
        )

        # Every failed dead letter of orders still dead: m-2 and m-4 (m-1 is replayed, m-3 invalid).
        many = operator.post(
            "/messaging/dead-letters/replay", json={"filter": {"queue": "orders", "reason": "failed"}}
        )
        assert many.status_code == 202, many.text
        assert finished_action(admin, many.json()["id"], timeout_s=60)["state"] == "succeeded"
        until("two replayed messages in orders", lambda: depth(stack.url, "orders") == 2, 10, 0.1)
        assert sorted((m.properties["message_id"], m.body) for m in take(stack.url, "orders")) == [
            ("m-2", b'{"n": 2}'), ("m-4", b'{"n": 4}')]  # fmt: skip
        states = {
            k: v["state"]
            for k, v in _by_message_id(
                admin.get("/messaging/dead-letters", params={"state": "any"}).json()["items"]
            ).items()
        }
        assert states == {"m-1": "replayed", "m-2": "replayed", "m-3": "dead", "m-4": "replayed"}

        audit = admin.get("/audit", params={"action": "messaging.replay"}).json()
        assert sorted(e["details"]["replayed"] for e in audit) == [1, 2]
        assert {e["actor"] for e in audit} == {"token:operator-test"}


def test_a_replayed_broker_dead_letter_dies_again_as_a_new_row(tmp_path, services):
    """Expired in "short" (100 ms TTL), replayed to shop/short.lived, it expires again: a
    second death, archived as its own row carrying x-coreplane-replayed."""
    with dead_letter_stack(services, tmp_path, agent=True) as stack, stack.api() as admin:
        publish(stack.url, "shop", "short.lived", b"tick", message_id="s-1")
        (first,) = stack.archived(admin, 1, queue="short")
        assert first["reason"] == "expired"
        replay = admin.post("/messaging/dead-letters/replay", json={"filter": {"queue": "short"}})
        assert finished_action(admin, replay.json()["id"], timeout_s=60)["state"] == "succeeded"
        again = [r for r in stack.archived(admin, 2, queue="short") if r["id"] != first["id"]]
        assert len(again) == 1 and again[0]["state"] == "dead" and again[0]["message_id"] == "s-1"
        detail = admin.get(f"/messaging/dead-letters/{again[0]['id']}").json()
        assert detail["headers"]["x-coreplane-replayed"] == 1 and detail["exchange"] == "shop"


def test_queue_purge_through_the_agent_empties_the_queue(tmp_path, services):
    with dead_letter_stack(services, tmp_path, agent=True) as stack, stack.api() as admin:
        for n in range(5):
            publish(stack.url, "shop", "order.created", b"%d" % n)
        assert depth(stack.url, "orders") == 5
        created = admin.post("/messaging/queues/orders/purge", json={"reason": "bad batch"})
        assert created.status_code == 202, created.text
        done = finished_action(admin, created.json()["id"], timeout_s=60)
        assert done["state"] == "succeeded", done
        assert done["result"]["output"]["purged"] == 5
        assert depth(stack.url, "orders") == 0
        (entry,) = admin.get("/audit", params={"action": "queue.purge"}).json()
        assert entry["details"]["queue"] == "orders" and entry["details"]["purged"] == 5

        gone = admin.post("/messaging/queues/no-such-queue/purge", json={})
        failed = finished_action(admin, gone.json()["id"], timeout_s=60)
        assert failed["state"] == "failed" and "no queue 'no-such-queue'" in failed["result"]["error"]
