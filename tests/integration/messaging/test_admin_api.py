"""The topology and queue-management API on the real app (in process, its control loop
carrying out the actions) with a real RabbitMQ vhost: viewers read and get 403 on writes;
bad input is a 4xx naming the field and makes no action; an unknown queue or policy is 404;
an operator's apply and policy are carried out."""

from __future__ import annotations

from contextlib import contextmanager

from fastapi.testclient import TestClient

from controlplane.app import create_app
from controlplane.settings import MessagingSettings
from tests.support.messaging_topology import publish
from tests.support.problems import fields
from tests.support.rabbitmq import queue_info, rabbit_vhost
from tests.support.stores import ADMIN, make_settings, migrated_store
from tests.support.timing import until

DEFINITION = {
    "exchanges": [{"name": "orders", "type": "topic"}],
    "queues": [{"name": "orders.created", "type": "quorum"}, {"name": "orders.replay"}],
    "bindings": [{"exchange": "orders", "queue": "orders.created", "routing_key": "order.created.*"}],
}


@contextmanager
def admin_api(services, tmp_path, url: str | None, definition: dict | None = None):
    """The app on a fresh SQLite store with messaging on ``url`` (none: not configured); the
    broker's management API from the services, no Celery broker (no task capture)."""
    rabbitmq = services.rabbitmq.model_copy(update={"url": None})
    messaging = MessagingSettings(url=url, definition=definition or {})
    with migrated_store("sqlite", tmp_path, services) as store:
        settings = make_settings(store, rabbitmq=rabbitmq, messaging=messaging)
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN}"}) as client:
            yield client


def token(client: TestClient, role: str) -> dict[str, str]:
    answer = client.post("/api/v1/tokens", json={"name": f"{role}-mq", "role": role})
    assert answer.status_code in (200, 201), answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def ended(client: TestClient, action_id: str) -> dict:
    def done() -> dict | None:
        action = client.get(f"/api/v1/actions/{action_id}").json()
        return action if action["state"] in ("succeeded", "failed", "cancelled") else None

    return until(f"action {action_id} to end", done, 30, 0.1)


def actions_count(client: TestClient) -> int:
    return len(client.get("/api/v1/actions", params={"limit": 500}).json())


def test_viewers_read_operators_apply(services, tmp_path):
    with rabbit_vhost(services) as url, admin_api(services, tmp_path, url, DEFINITION) as client:
        viewer, operator = token(client, "viewer"), token(client, "operator")
        seen = client.get("/api/v1/messaging/topology", headers=viewer)
        assert seen.status_code == 200, seen.text
        body = seen.json()
        assert body["definition"]["queues"][0]["name"] == "orders.created"
        assert {"orders.created", "orders.created.dlq"} <= {d["name"] for d in body["expanded"]}
        assert {"orders.created", "orders.replay"} <= {d["name"] for d in body["diff"]["add"]}

        before = actions_count(client)
        for method, path, payload in (
            ("POST", "/api/v1/messaging/topology/apply", {}),
            ("POST", "/api/v1/messaging/queues", {"queue": {"name": "x"}}),
            ("POST", "/api/v1/messaging/queues/orders.created/delete", {}),
            ("POST", "/api/v1/messaging/queues/orders.created/move", {"destination": "orders.replay"}),
            ("PUT", "/api/v1/messaging/policies/cap", {"pattern": "^x$", "definition": {"max-length": 1}}),
            ("DELETE", "/api/v1/messaging/policies/cap", None),
        ):
            refused = client.request(method, path, json=payload, headers=viewer)
            assert refused.status_code == 403, (path, refused.text)
        assert actions_count(client) == before

        applied = client.post(
            "/api/v1/messaging/topology/apply", json={"reason": "first deploy"}, headers=operator
        )
        assert applied.status_code == 202, applied.text
        assert applied.json()["kind"] == "mq.apply" and applied.json()["target"] == "rabbitmq"
        done = ended(client, applied.json()["id"])
        assert done["state"] == "succeeded", done
        assert client.get("/api/v1/messaging/topology", headers=viewer).json()["diff"]["empty"] is True

        policy = {"pattern": "^orders\\.replay$", "definition": {"max-length": 7}, "reason": "cap replays"}
        put = client.put("/api/v1/messaging/policies/replay-cap", json=policy, headers=operator)
        assert put.status_code == 202, put.text
        assert ended(client, put.json()["id"])["state"] == "succeeded"
        read = client.get("/api/v1/messaging/policies/replay-cap", headers=viewer)
        assert read.status_code == 200 and read.json()["definition"] == {"max-length": 7}
        until(
            "the policy on the queue",
            lambda: (
                queue_info(services, url, "orders.replay").get("effective_policy_definition")
                == {"max-length": 7}
            ),
            20,
            0.2,
        )

        publish(url, "orders.created", 4)
        moved = client.post("/api/v1/messaging/queues/orders.created/move",
                            json={"destination": "orders.replay", "limit": 3}, headers=operator)  # fmt: skip
        assert moved.status_code == 202, moved.text
        result = ended(client, moved.json()["id"])
        assert result["state"] == "succeeded" and result["result"]["output"]["moved"] == 3


def test_bad_input_is_a_4xx_naming_the_field_and_makes_no_action(services, tmp_path):
    with rabbit_vhost(services) as url, admin_api(services, tmp_path, url, DEFINITION) as client:
        client.post("/api/v1/messaging/topology/apply", json={})  # the queues exist for the 404s below
        until(
            "the topology applied",
            lambda: client.get("/api/v1/messaging/topology").json()["diff"]["empty"],
            30,
            0.1,
        )
        before = actions_count(client)

        malformed = {
            "queues": [{"name": "q", "type": "quorum", "max_priority": 5}, {"name": "r", "max_priority": 999}]
        }
        check = client.post("/api/v1/messaging/definition/check", json=malformed)
        assert check.status_code == 422, check.text
        assert fields(check) == ["definition.queues[0]", "definition.queues[1].max_priority"]  # every fault
        assert "quorum queues on RabbitMQ 3.x have none" in check.json()["detail"]
        check = client.post(
            "/api/v1/messaging/definition/check", json={"queues": [{"name": "r", "max_priority": 999}]}
        )
        assert check.status_code == 422 and fields(check) == ["definition.queues[0].max_priority"]
        not_json = client.post("/api/v1/messaging/definition/check", content=b"{not json",
                               headers={"Content-Type": "application/json"})  # fmt: skip
        assert not_json.status_code in (400, 415, 422), not_json.text
        good = client.post("/api/v1/messaging/definition/check", json={"queues": [{"name": "fresh"}]})
        assert good.status_code == 200, good.text
        assert {"fresh", "fresh.dlq"} <= {d["name"] for d in good.json()["diff"]["add"]}
        assert "orders.created" in {d["name"] for d in good.json()["diff"]["remove"]}

        cases = [
            ("POST", "/api/v1/messaging/topology/apply", {"definition": {"queues": [{"name": "bad name"}]}},
             422, "params.definition.queues[0].name"),
            ("POST", "/api/v1/messaging/queues", {"queue": {"name": "q", "max_priority": 0}}, 422, "params.queue.max_priority"),
            ("POST", "/api/v1/messaging/queues/orders.created/move", {"destination": "orders.created"}, 422,
             "params.destination"),
            ("POST", "/api/v1/messaging/queues/orders.created/move", {"destination": "nowhere"}, 422, "destination"),
            ("POST", "/api/v1/messaging/queues/orders.created/move", {"destination": "orders.replay", "limit": 0},
             422, "body.limit"),
            ("PUT", "/api/v1/messaging/policies/cap", {"pattern": "^x$", "definition": {"colour": "red"}}, 422,
             "params.definition.colour"),
            ("PUT", "/api/v1/messaging/policies/cap", {"pattern": "(", "definition": {"max-length": 1}}, 422,
             "params.pattern"),
            ("PUT", "/api/v1/messaging/policies/" + "p" * 256, {"pattern": "x", "definition": {"max-length": 1}}, 422,
             "path.name"),
            ("POST", "/api/v1/messaging/queues/nowhere/delete", {}, 404, None),
            ("POST", "/api/v1/messaging/queues/nowhere/move", {"destination": "orders.replay"}, 404, None),
            ("DELETE", "/api/v1/messaging/policies/nowhere", None, 404, None),
        ]  # fmt: skip
        for method, path, payload, status, field in cases:
            answer = client.request(method, path, json=payload)
            assert answer.status_code == status, (path, payload, answer.text)
            if field:
                assert field in fields(answer), (path, answer.text)
        assert client.get("/api/v1/messaging/policies/nowhere").status_code == 404
        assert actions_count(client) == before


def test_without_a_broker_the_routes_say_how_to_configure_one(services, tmp_path):
    with admin_api(services, tmp_path, None) as client:
        answer = client.get("/api/v1/messaging/topology")
        assert answer.status_code == 409 and "COREPLANE_MESSAGING__URL" in answer.json()["detail"]
        assert client.post("/api/v1/messaging/queues/q/delete", json={}).status_code == 409
