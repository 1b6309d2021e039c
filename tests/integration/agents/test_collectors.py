"""Each collector against its real service: the figures move when the service changes."""

import io
import subprocess
import time
import uuid

import httpx
import psycopg
import pytest
import redis
from kombu import Connection
from minio import Minio
from pymemcache.client.base import Client

from agents.collectors.registry import collector_class
from agents.config import TargetConfig
from tests.support.messaging_analytics import publish
from tests.support.processes import free_port
from tests.support.rabbitmq import rabbit_vhost, vhost_of
from tests.support.services import ROOT, require
from tests.support.timing import until


def collect(kind: str, address: str, **options):
    target = TargetConfig(type=kind, name=kind, address=address, timeout_s=5, options=options)
    collector = collector_class(kind)(target)
    return collector, collector.collect()


def figure(obs, name: str, **tags) -> float:
    values = [v for n, v, t in obs.metrics if n == name and all(t.get(k) == w for k, w in tags.items())]
    assert values, f"{name} {tags} missing from {[n for n, _, _ in obs.metrics]}"
    return values[0]


def test_redis_memory_and_keys_grow_when_keys_are_written(services):
    require(services.redis.url, "redis")
    collector, before = collect("redis", services.redis.url)
    client = redis.Redis.from_url(services.redis.url)
    prefix = f"grow:{uuid.uuid4().hex}:"
    with client.pipeline() as pipe:
        for i in range(2000):
            pipe.set(f"{prefix}{i}", "x" * 200, ex=120)
        pipe.execute()
    after = collector.collect()
    assert figure(after, "coreplane_redis_keys") >= figure(before, "coreplane_redis_keys") + 2000
    assert figure(after, "coreplane_redis_used_memory_bytes") > figure(
        before, "coreplane_redis_used_memory_bytes"
    )
    assert figure(after, "coreplane_redis_is_primary") == 1
    assert after.status == "passing"
    # An unpersisted cache shows: RDB and AOF as Redis is configured.
    persistence = {tags["mode"]: value for name, value, tags in after.metrics
                   if name == "coreplane_redis_persistence_enabled"}  # fmt: skip
    assert persistence["rdb"] == (1 if client.config_get("save")["save"] else 0)
    assert persistence["aof"] == (1 if client.config_get("appendonly")["appendonly"] == "yes" else 0)


def test_redis_connected_replicas_drop_when_a_replica_stops(services):
    require(services.redis.replica_urls, "redis")
    collector, before = collect("redis", services.redis.url)
    assert figure(before, "coreplane_redis_connected_replicas") == 2
    port = services.redis.replica_urls[-1].rsplit(":", 1)[1].split("/")[0]
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], check=False, capture_output=True)
    try:

        def one_replica():  # type: ignore[no-untyped-def]
            obs = collector.collect()
            return obs if figure(obs, "coreplane_redis_connected_replicas") == 1 else None

        obs = until("the primary to count 1 replica, not 2", one_replica, timeout_s=10, every_s=0.2)
        replica = TargetConfig(
            type="redis", name="redis", address=services.redis.replica_urls[-1], timeout_s=1
        )
        with pytest.raises(redis.ConnectionError):
            collector_class("redis")(replica).collect()
    finally:
        subprocess.run(["bash", ROOT / "scripts/services.sh", "up", "redis"], check=True, capture_output=True)
    assert obs.status == "passing"


def test_memcached_items_grow(services):
    require(services.memcached.servers, "memcached")
    node = services.memcached.servers[0]
    collector, before = collect("memcached", node)
    host, port = node.rsplit(":", 1)
    client = Client((host, int(port)))
    for i in range(100):
        client.set(f"grow-{uuid.uuid4().hex}-{i}", b"v", expire=120, noreply=False)
    after = collector.collect()
    assert figure(after, "coreplane_memcached_items") >= figure(before, "coreplane_memcached_items") + 100
    assert figure(after, "coreplane_memcached_bytes") > figure(before, "coreplane_memcached_bytes")


def test_postgres_size_grows_and_commits_are_counted(services):
    require(services.postgres.url, "postgres")
    collector, before = collect("postgres", services.postgres.url)
    dsn = services.postgres.url.replace("+psycopg", "")
    table = f"grow_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 20000) g"
        )
        for _ in range(50):
            conn.execute("SELECT 1")
    try:
        after = collector.collect()
        assert figure(after, "coreplane_postgres_database_size_bytes") > figure(
            before, "coreplane_postgres_database_size_bytes"
        )
        assert figure(after, "coreplane_postgres_commits_per_second") > 0
        assert figure(after, "coreplane_postgres_is_primary") == 1
        assert figure(after, "coreplane_postgres_connections", state="active") >= 1
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {table}")


def test_rabbitmq_queue_depth_grows_when_messages_are_published(services):
    require(services.rabbitmq.url, "rabbitmq")
    queue = f"grow-{uuid.uuid4().hex[:8]}"
    with Connection(services.rabbitmq.url) as conn:
        channel = conn.channel()
        channel.queue_declare(queue=queue, auto_delete=False)
        with conn.Producer() as producer:
            for i in range(25):
                producer.publish({"i": i}, routing_key=queue)
        try:
            collector, _ = collect("rabbitmq", services.rabbitmq.management_url)

            def depth() -> list[float]:
                obs = collector.collect()
                return [
                    v
                    for n, v, t in obs.metrics
                    if n == "coreplane_rabbitmq_queue_messages_ready" and t["queue"] == queue
                ]

            # The management API refreshes every few seconds.
            until("the queue's depth to read 25", lambda: depth() == [25.0], timeout_s=15, every_s=1)
        finally:
            channel.queue_delete(queue=queue)


def test_elasticsearch_doc_count_grows(services):
    es = services.elasticsearch
    require(es.url, "elasticsearch")
    index = f"grow-{uuid.uuid4().hex[:8]}"
    auth = (es.username, es.password)
    docs = "".join(f'{{"index":{{}}}}\n{{"n":{i}}}\n' for i in range(40))
    response = httpx.post(
        f"{es.url}/{index}/_bulk?refresh=true",
        content=docs,
        auth=auth,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200
    try:
        _, obs = collect("elasticsearch", es.url, username=es.username, password=es.password)
        assert figure(obs, "coreplane_elasticsearch_index_docs", index=index) == 40
        assert figure(obs, "coreplane_elasticsearch_cluster_status") in (0, 1)
        assert figure(obs, "coreplane_elasticsearch_jvm_heap_used_bytes") > 0
    finally:
        httpx.delete(f"{es.url}/{index}", auth=auth)


def test_s3_objects_per_bucket_and_canary_latency(services):
    s3 = services.s3
    require(s3.endpoint, "s3")
    client = Minio(s3.endpoint, s3.access_key, s3.secret_key, secure=False)
    bucket = f"grow-{uuid.uuid4().hex[:8]}"
    client.make_bucket(bucket)
    try:
        for i in range(3):
            client.put_object(bucket, f"o{i}", io.BytesIO(b"12345"), 5)
        _, obs = collect("s3", s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key)
        assert figure(obs, "coreplane_s3_bucket_objects", bucket=bucket) == 3
        assert figure(obs, "coreplane_s3_bucket_bytes", bucket=bucket) == 15
        assert {t["op"] for n, _, t in obs.metrics if n == "coreplane_s3_canary_seconds"} == {
            "put",
            "get",
            "delete",
        }
    finally:
        for i in range(3):
            client.remove_object(bucket, f"o{i}")
        client.remove_bucket(bucket)


def test_http_status_and_host_figures(control_plane):
    _, ok = collect("http", f"{control_plane.url}/healthz")
    assert figure(ok, "coreplane_http_status_code") == 200 and ok.status == "passing"
    _, missing = collect("http", f"{control_plane.url}/no-such-page")
    assert figure(missing, "coreplane_http_status_code") == 404 and missing.status == "critical"
    _, host = collect("host", "/")
    assert (
        0
        < figure(host, "coreplane_host_memory_used_bytes")
        < figure(host, "coreplane_host_memory_total_bytes")
    )


def test_channels_round_trip(services):
    collector, obs = collect("channels", services.redis.url)
    collector.close()
    assert 0 < figure(obs, "coreplane_channels_round_trip_seconds") < 1


def test_celery_workers_and_task_counts(services, request):
    collector, before = collect("celery", services.rabbitmq.url)
    # Before any worker runs nobody answers: that is critical.
    assert (before.status, figure(before, "coreplane_celery_workers_online")) == ("critical", 0)
    celery = request.getfixturevalue("celery_worker")
    try:
        assert celery.send_task("coreplane.ping").get(timeout=60) == "pong"

        def counted():  # type: ignore[no-untyped-def]
            obs = collector.collect()
            return obs if figure(obs, "coreplane_celery_tasks_total", state="succeeded") >= 1 else None

        obs = until("the events receiver to count the task", counted, timeout_s=20, every_s=0.5)
        assert figure(obs, "coreplane_celery_workers_online") == 1
        assert obs.status == "passing"
        # The worker's heartbeats say one is up: the ping stops at its reply instead of
        # waiting out its 2 s timeout (best of three, for a loaded machine).
        took = []
        for _ in range(3):
            started = time.monotonic()
            assert figure(collector.collect(), "coreplane_celery_workers_online") == 1
            took.append(time.monotonic() - started)
        assert min(took) < 1.0, took
    finally:
        collector.close()


def test_haproxy_server_status_and_drain(haproxy_lb):
    sock, _ = haproxy_lb({"s1": free_port(), "s2": free_port()})
    collector, before = collect("haproxy", sock)
    assert figure(before, "coreplane_haproxy_server_drain", proxy="app", server="s1") == 0
    from agents.actuators.haproxy import set_server

    set_server({"socket": sock, "backend": "app", "server": "s1", "state": "drain"})
    after = collector.collect()
    assert figure(after, "coreplane_haproxy_server_drain", proxy="app", server="s1") == 1
    assert figure(after, "coreplane_haproxy_server_drain", proxy="app", server="s2") == 0


def test_rabbitmq_per_queue_figures_oldest_age_and_dead_letters_by_source(services):
    with rabbit_vhost(services) as url:
        with Connection(url) as conn:
            for name in ("orders", "orders.dlq"):
                conn.default_channel.queue_declare(queue=name, durable=True, auto_delete=False)
        publish(url, "orders", 4, timestamp=int(time.time()) - 90)
        publish(url, "orders.dlq", 2)
        vhost = vhost_of(url)
        collector, _ = collect("rabbitmq", services.rabbitmq.management_url)
        try:

            def settled():
                obs = collector.collect()
                found = {(n, t.get("queue")): v for n, v, t in obs.metrics if t.get("vhost") == vhost}
                # The head message's timestamp may be reported a statistics refresh after the depth.
                aged = ("coreplane_rabbitmq_queue_oldest_age_seconds", "orders") in found
                ready = aged and found.get(("coreplane_rabbitmq_queue_dead_letters", "orders")) == 2
                return (
                    (obs, found)
                    if ready and found.get(("coreplane_rabbitmq_queue_messages", "orders")) == 4
                    else None
                )

            obs, found = until(
                "the collector to see 4 in orders and 2 dead", settled, timeout_s=30, every_s=1
            )
        finally:
            collector.close()
    assert 90 <= found[("coreplane_rabbitmq_queue_oldest_age_seconds", "orders")] < 300
    assert found[("coreplane_rabbitmq_queue_consumers", "orders")] == 0
    assert ("coreplane_rabbitmq_queue_dead_letter_per_second", "orders") in found
    assert ("coreplane_rabbitmq_queue_dead_letters", "orders.dlq") not in found, "tagged with the source"
    for rate in ("publish", "deliver", "ack", "redeliver"):
        assert found[(f"coreplane_rabbitmq_queue_{rate}_per_second", "orders")] >= 0
    assert figure(obs, "coreplane_rabbitmq_dead_letters") >= 2
    assert "queue(s)" in obs.message


def test_rabbitmq_reports_at_most_500_queues_and_says_so(services):
    with rabbit_vhost(services) as url:
        with Connection(url) as conn:
            for i in range(501):  # past the cap whatever else the broker holds
                conn.default_channel.queue_declare(queue=f"cap-{i:04d}", auto_delete=False)
        collector, _ = collect("rabbitmq", services.rabbitmq.management_url)
        try:
            obs = collector.collect()
        finally:
            collector.close()
    reported = {
        t["vhost"] + "/" + t["queue"] for n, _, t in obs.metrics if n == "coreplane_rabbitmq_queue_messages"
    }
    assert len(reported) == 500
    assert "capped: the first 500 by name reported" in obs.message
