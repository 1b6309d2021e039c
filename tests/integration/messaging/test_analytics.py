"""Queue figures against the real RabbitMQ: queue_stats from the management API (depths,
consumers, the oldest message's age, each queue's DLQ folded into its row, archived dead
letters from the store), series from the metrics an agent pushed, and the API routes with
their roles and refusals."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

from controlplane.clock import utcnow
from controlplane.errors import NotFound, Rejected
from controlplane.messaging import analytics
from controlplane.messaging.management import Management
from controlplane.settings import MessagingSettings, RabbitMQSettings
from controlplane.store.models import MqDeadLetter
from tests.support.messaging import declare_definition, settings_for
from tests.support.messaging_analytics import app_client, app_settings, publish, token_of
from tests.support.rabbitmq import rabbit_vhost, vhost_of
from tests.support.stores import make_settings
from tests.support.timing import until

DEFINITION = {"queues": [{"name": "orders"}, {"name": "audit", "dead_letter": False}]}


def _rows(management: Management, session=None) -> dict[str, dict]:
    return {row["name"]: row for row in analytics.queue_stats(management, session)}


def _settled(
    management: Management, orders: int, dlq: int, session=None, aged: bool = False
) -> dict[str, dict]:
    """The rows once the management API's statistics (refreshed every few seconds) show
    ``orders`` messages in orders and ``dlq`` in orders.dlq (and, ``aged``, the head message's
    timestamp, which its statistics may report a refresh after the depth)."""

    def seen() -> dict | None:
        rows = _rows(management, session)
        found = (rows.get("orders", {}).get("depth"), rows.get("orders.dlq", {}).get("depth"))
        waiting = aged and rows.get("orders", {}).get("oldest_age_s") is None
        return rows if found == (orders, dlq) and not waiting else None

    return until("the management API to count the messages", seen, timeout_s=30, every_s=0.5)


def _dead_letter(vhost: str, queue: str, minutes_ago: float) -> MqDeadLetter:
    now = utcnow()
    return MqDeadLetter(
        fingerprint=uuid.uuid4().hex, vhost=vhost, queue=queue, exchange="", routing_key=queue,
        message_id=None, content_type="application/json", properties={}, headers={}, body=b"{}",
        body_bytes=2, reason="failed", error="ValueError: no", attempts=3,
        dead_at=now - timedelta(minutes=minutes_ago), archived_at=now,
    )  # fmt: skip


def test_queue_stats_folds_the_dlq_and_ages_the_head_message(services):
    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, DEFINITION))
        stamp = int(time.time()) - 120
        publish(url, "orders", 5, timestamp=stamp)
        publish(url, "orders.dlq", 2)
        publish(url, "audit", 1)  # no timestamp property: no age
        with Management.of(runtime) as management:
            rows = _settled(management, 5, 2, aged=True)
    orders, dlq, audit = rows["orders"], rows["orders.dlq"], rows["audit"]
    assert (orders["type"], orders["ready"], orders["unacked"], orders["consumers"]) == ("classic", 5, 0, 0)
    assert orders["dlq_depth"] == 2, "orders' row carries its DLQ's depth"
    assert orders["dead_letter_rate"] is not None and orders["dead_letter_rate"] >= 0
    assert 120 <= orders["oldest_age_s"] < 300, orders["oldest_age_s"]
    assert audit["depth"] == 1 and audit["oldest_age_s"] is None, "unstamped: no age, not 0"
    assert audit["dlq_depth"] is None, "audit has no DLQ"
    assert dlq["dlq_depth"] is None, "a DLQ has no DLQ of its own"
    assert orders["archived_dead"] is None, "no session: no archive figure"


def test_archived_dead_letters_count_the_last_hour_per_source_queue(services, store):
    with rabbit_vhost(services) as url:
        runtime = declare_definition(settings_for(services, url, DEFINITION))
        vhost = vhost_of(url)
        with store.sessions() as session, session.begin():
            session.add_all([_dead_letter(vhost, "orders", m) for m in (1, 10, 59)])
            session.add(_dead_letter(vhost, "orders", 61))  # older than the hour
            session.add(_dead_letter("another-vhost", "orders", 1))  # not this vhost's
        publish(url, "orders", 1)
        with Management.of(runtime) as management, store.sessions() as session:
            rows = _settled(management, 1, 0, session)
            with pytest.raises(NotFound):
                analytics.queue_row(management, "missing", session)
    assert rows["orders"]["archived_dead"] == 3
    assert rows["audit"]["archived_dead"] == 0
    assert rows["orders.dlq"]["archived_dead"] is None, "counted on the source queue, not its DLQ"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"metric": "bogus"}, "metric"),
        ({"queue": "no spaces"}, "queue"),
        ({"step_s": 1}, "step_s"),  # an hour in 1 s steps: 3600 buckets, over 1000
        ({"since_h": 0}, "since"),  # since == until
        ({"since_h": 24 * 8}, "since"),  # over 7 days
    ],
)
def test_series_refuses_bad_input_naming_the_field(services, store, change, field):
    now = utcnow()
    args = {"queue": "orders", "metric": "depth", "step_s": 60, "since_h": 1} | change
    since = now - timedelta(hours=args.pop("since_h"))
    with store.sessions() as session, pytest.raises(Rejected) as refused:
        analytics.series(session, args["queue"], args["metric"], since, now, args["step_s"])
    assert refused.value.errors[0]["field"] == field, refused.value.errors


def test_the_api_reads_queues_stats_and_pushed_series_with_roles(services, store):
    with rabbit_vhost(services) as url:
        messaging = settings_for(services, url, DEFINITION)
        declare_definition(messaging)
        publish(url, "orders", 3, timestamp=int(time.time()))
        with app_client(app_settings(store, services, messaging)) as admin:
            viewer = {"Authorization": f"Bearer {token_of(admin, 'viewer')}"}

            def listed() -> dict | None:
                answer = admin.get("/api/v1/messaging/queues", headers=viewer)
                assert answer.status_code == 200, answer.text
                rows = {r["name"]: r for r in answer.json()}
                return rows if rows.get("orders", {}).get("depth") == 3 else None

            rows = until("GET /messaging/queues to show 3 in orders", listed, timeout_s=30, every_s=0.5)
            assert rows["orders"]["archived_dead"] == 0 and rows["orders"]["dlq_depth"] == 0
            one = admin.get("/api/v1/messaging/queues/orders/stats", headers=viewer)
            assert one.status_code == 200 and one.json()["depth"] == 3
            assert admin.get("/api/v1/messaging/queues/nope/stats", headers=viewer).status_code == 404

            # What an agent pushed: depth of orders every 15 s over the last 10 minutes.
            now = utcnow()
            points = [
                {"metric_type": "coreplane_rabbitmq_queue_messages", "service_name": "rabbitmq",
                 "timestamp": (now - timedelta(seconds=15 * i)).isoformat() + "Z", "value": float(i),
                 "tags": {"queue": "orders", "vhost": vhost_of(url)}}
                for i in range(40)
            ]  # fmt: skip
            batch = {
                "batch_id": f"mq-{uuid.uuid4().hex}",
                "agent": "mq-test",
                "metrics": points,
                "events": [],
            }
            assert admin.post("/api/v1/ingest", json=batch).status_code == 202
            params = {"queue": "orders", "metric": "depth", "step_s": 15,
                      "since": (now - timedelta(minutes=11)).isoformat() + "Z"}  # fmt: skip
            found = admin.get("/api/v1/messaging/analytics", params=params, headers=viewer)
            assert found.status_code == 200, found.text
            (series,) = found.json()["series"]
            assert series["labels"]["vhost"] == vhost_of(url)
            assert sorted(v for _, v in series["points"]) == [float(i) for i in range(40)]

            bad = admin.get("/api/v1/messaging/analytics", params=params | {"metric": "nope"}, headers=viewer)
            assert bad.status_code == 422 and "metric" in bad.text
            wide = admin.get("/api/v1/messaging/analytics", params=params | {"step_s": 0}, headers=viewer)
            assert wide.status_code == 422 and "step_s" in wide.text
            # Backups are the admin's: a viewer is refused before anything is written.
            refused = admin.post("/api/v1/messaging/backups", json={"to": "file"}, headers=viewer)
            assert refused.status_code == 403


def test_without_a_broker_the_routes_say_how_to_configure_one(store):
    # Explicit: the environment (var/services.env) names the harness's broker.
    bare = make_settings(store, rabbitmq=RabbitMQSettings(), messaging=MessagingSettings())
    with app_client(bare) as admin:
        answer = admin.get("/api/v1/messaging/queues")
    assert answer.status_code == 409 and "COREPLANE_MESSAGING__URL" in answer.text
