"""RabbitMQ through kombu (AMQP), its management API and its Prometheus endpoint."""

import uuid

import httpx
from kombu import Connection, Exchange, Queue

from tests.support.services import reach, require


def test_publish_and_consume_a_message(services):
    require(services.rabbitmq.url, "rabbitmq")
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name, auto_delete=True)
    with Connection(services.rabbitmq.url, connect_timeout=3) as conn:
        reach("rabbitmq", conn.as_uri(), conn.ensure_connection, max_retries=1)
        with conn.Producer() as producer:
            producer.publish({"n": 1}, exchange=queue.exchange, routing_key=name, declare=[queue])
        with conn.SimpleQueue(queue) as simple:
            message = simple.get(timeout=5)
            assert message.payload == {"n": 1}
            message.ack()


def test_management_api_and_prometheus_plugin(services):
    require(services.rabbitmq.management_url, "rabbitmq")
    overview = reach(
        "rabbitmq",
        "management API",
        httpx.get,
        f"{services.rabbitmq.management_url}/api/overview",
        timeout=5,
    )
    overview.raise_for_status()
    assert overview.json()["rabbitmq_version"]
    metrics = reach("rabbitmq", services.rabbitmq.prometheus_url, httpx.get, services.rabbitmq.prometheus_url)
    assert "rabbitmq_build_info" in metrics.text or "rabbitmq_identity_info" in metrics.text
