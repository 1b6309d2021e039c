"""The multi-layer cache against the real Redis and Memcached: each layer and the stack,
tag and prefix invalidation across three processes, a layer killed and restarted, and a
stampede on a cold key (once per process; once overall with the lease; 300 threads in one
process within a connection pool of 100), a pool that runs out."""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import uuid

import pytest
import redis

from agents.config import TargetConfig
from controlplane.cache import Cache, CacheError, MemcachedLayer, MemoryLayer, RedisLayer, backup
from controlplane.clock import ManualClock
from tests.support.agents import running_agent
from tests.support.console import console_login
from tests.support.processes import free_port
from tests.support.services import ROOT, require
from tests.support.timing import until


@pytest.fixture
def redis_client(services):
    require(services.redis.url, "redis")
    client = redis.Redis.from_url(services.redis.url)
    yield client
    client.close()


def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def test_each_layer_and_the_stack_fill_upwards(services, redis_client):
    require(services.memcached.servers, "memcached")
    memory, memcached, red = (
        MemoryLayer(),
        MemcachedLayer(services.memcached.servers),
        RedisLayer(redis_client),
    )
    cache = Cache([(memory, 60), (memcached, 300), (red, 3600)], namespace=namespace(), redis=redis_client)
    cache.set_many({f"item:{i}": {"i": i} for i in range(20)}, tags=["items"])
    full = [cache._key(f"item:{i}") for i in range(20)]
    for layer in (memory, memcached, red):  # written to every layer
        assert len(layer.get_many(full)) == 20, layer.name
    memory.clear()
    assert cache.get("item:3") == {"i": 3}  # from Memcached ...
    assert memory.get(full[3]) is not None  # ... and back in memory
    memory.clear()
    memcached.delete_many(full)
    assert cache.get_many(["item:4", "item:5"]) == {"item:4": {"i": 4}, "item:5": {"i": 5}}  # from Redis
    assert len(memcached.get_many(full[4:6])) == 2  # filled on the way up
    stats = cache.stats()["layers"]
    assert stats["memory"]["misses"] >= 3 and stats["redis"]["hits"] == 2 and stats["memcached"]["hits"] == 1
    # The in-process layer keeps an entry at most its own TTL (jittered), whatever was asked.
    clock = ManualClock()
    short = Cache(
        [(MemoryLayer(clock=clock), 0.1), (red, 60)], namespace=namespace(), redis=redis_client, jitter=0,
        clock=clock,
    )  # fmt: skip
    short.set("k", 1, ttl_s=60)
    clock.advance(0.09)
    assert short.memory.get(short._key("k")) is not None
    clock.advance(0.02)
    assert short.memory.get(short._key("k")) is None and short.get("k") == 1
    cache.close()
    short.close()


def _worker(config: dict) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.cache.worker", json.dumps(config)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert "ready" in json.loads(proc.stdout.readline())
    return proc


def _ask(proc: subprocess.Popen, command: dict) -> dict:
    proc.stdin.write(json.dumps(command) + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def test_tags_and_prefixes_invalidate_in_three_processes(services, redis_client):
    ns = namespace()
    config = {"redis_url": services.redis.url, "memcached": services.memcached.servers, "namespace": ns}
    workers = [_worker(config) for _ in range(3)]
    try:
        keys = {"product:1": ["products"], "product:2": ["products"], "user:42:name": [], "user:7:name": [],
                "other": []}  # fmt: skip
        for w in workers:
            assert _ask(w, {"op": "fill", "keys": keys}) == {"filled": 5}
        before = [_ask(w, {"op": "peek", "keys": list(keys)}) for w in workers]
        assert all(b["memory"] == 5 and None not in b["values"].values() for b in before)
        # The invalidating process has the same layers (it deletes keys from Memcached itself).
        here = Cache(
            [(MemcachedLayer(services.memcached.servers), 300), (RedisLayer(redis_client), 300)],
            namespace=ns, redis=redis_client,
        )  # fmt: skip
        here.invalidate(tags=["products"], prefixes=["user:42:"])
        for w in workers:  # the broadcast reaches each process
            until("the invalidation to reach a worker",
                  lambda w=w: _ask(w, {"op": "peek", "keys": ["product:1"]})["values"]["product:1"] is None)  # fmt: skip
            values = _ask(w, {"op": "peek", "keys": list(keys)})["values"]
            assert (
                values["product:1"] is None and values["product:2"] is None and values["user:42:name"] is None
            )
            assert values["user:7:name"] is not None and values["other"] is not None
        here.invalidate(keys=["other"])
        for w in workers:
            until("the key's invalidation to reach a worker",
                  lambda w=w: _ask(w, {"op": "peek", "keys": ["other"]})["values"]["other"] is None)  # fmt: skip
            answer = _ask(w, {"op": "peek", "keys": ["other", "user:7:name"]})
            assert answer["values"]["other"] is None and answer["values"]["user:7:name"] is not None
        here.close()
    finally:
        for w in workers:
            w.stdin.close()
            w.wait(timeout=10)


def test_a_layer_killed_mid_test_is_skipped_and_rejoins(redis_client, tmp_path):
    binary = shutil.which("memcached") or "/usr/bin/memcached"
    port = free_port()
    command = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16", "-u", "memcache"]

    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:  # not up yet
            return False

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until("memcached to listen", listening, timeout_s=5)
        return proc

    proc = start()
    memcached = MemcachedLayer([f"127.0.0.1:{port}"], dead_timeout_s=0.5)
    clock = ManualClock()
    cache = Cache(
        [(MemoryLayer(clock=clock), 60), (memcached, 300), (RedisLayer(redis_client), 300)],
        namespace=namespace(), redis=redis_client, retry_after_s=0.5, clock=clock,
    )  # fmt: skip
    try:
        cache.set("a", 1)
        proc.kill()
        proc.wait()
        cache.memory.clear()
        assert cache.get("a") == 1  # Memcached is gone: served from Redis, no exception
        assert cache.set("b", 2) and cache.get_or_set("c", lambda: 3) == 3
        assert cache.stats()["layers"]["memcached"]["errors"] >= 1
        # Skipped until retry_after_s has passed on the cache's clock, even once it is back.
        assert not cache._usable(cache.slots[1])
        strict = Cache([(memcached, 300)], namespace=namespace(), strict=True)
        with pytest.raises(CacheError, match="memcached"):
            strict.set("x", 1)
        proc = start()

        def rejoined() -> bool:
            # pymemcache keeps the node out of its ring for dead_timeout on the real clock, so
            # this polls; each try moves the cache's clock past retry_after_s.
            clock.advance(0.6)
            cache.set("d", 4)
            return bool(memcached.get_many([cache._key("d")]))

        until("Memcached to rejoin", rejoined, timeout_s=5, every_s=0.1)
    finally:
        cache.close()
        proc.kill()


@pytest.mark.parametrize(("lease_s", "loads"), [(0, 3), (5, 1)])
def test_a_stampede_loads_once_per_process_and_once_overall_with_the_lease(
    services, redis_client, lease_s, loads
):
    ns = namespace()
    counter = f"{ns}:loads"
    workers = [_worker({"redis_url": services.redis.url, "namespace": ns}) for _ in range(3)]
    try:
        for w in workers:  # all three start their 100 calls at (nearly) the same moment
            w.stdin.write(json.dumps({"op": "stampede", "key": "cold", "threads": 100, "lease_s": lease_s,
                                      "counter": counter}) + "\n")  # fmt: skip
            w.stdin.flush()
        answers = [json.loads(w.stdout.readline()) for w in workers]
    finally:
        for w in workers:
            w.stdin.close()
            w.wait(timeout=10)
    assert all(a["calls"] == 100 and a["results"] == ["loaded"] for a in answers)
    assert all(a["loads"] <= 1 for a in answers)  # single-flight inside each process
    assert int(redis_client.get(counter)) == loads
    redis_client.delete(counter)


def test_300_threads_on_a_cold_key_with_a_lease_share_one_load_without_exhausting_the_pool(services):
    """The stampede that once exhausted redis-py's pool (100 connections by default): every
    caller ran its own Redis read before joining the single flight, the pool ran out, and
    the Redis layer was marked failed. Waiting callers must need no connection of their own."""
    require(services.redis.url, "redis")
    client = redis.Redis.from_url(services.redis.url)  # the default pool: 100, not blocking
    cache = Cache(
        [(MemoryLayer(), 60), (RedisLayer(client), 300)], namespace=namespace(), redis=client
    )  # fmt: skip
    callers, arrived, loads = 300, [], []
    arrival = threading.Condition()

    def loader() -> str:
        loads.append(1)
        with arrival:  # a slow origin: it answers once every caller is waiting on it
            assert arrival.wait_for(lambda: len(arrived) == callers, timeout=30)
        return "loaded"

    results: list[object] = []

    def call() -> None:
        start.wait()
        with arrival:
            arrived.append(1)
            arrival.notify_all()
        try:
            results.append(cache.get_or_set("cold", loader, lease_s=5))
        except Exception as exc:  # noqa: BLE001 - the assertion below names it
            results.append(exc)

    start = threading.Barrier(callers)
    threads = [threading.Thread(target=call) for _ in range(callers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert results == ["loaded"] * callers
        assert len(loads) == 1 and cache.loads == 1
        layers = cache.stats()["layers"]
        assert layers["redis"]["errors"] == 0 and layers["tags"]["errors"] == 0
        assert all(slot.down_until == 0.0 for slot in cache.slots)  # never marked failed
        assert client.get(cache._key("cold")) is not None  # and the value reached Redis
    finally:
        cache.close()
        client.close()


@pytest.mark.parametrize("pool", ["refusing", "blocking"])
def test_a_pool_that_runs_out_degrades_the_read_and_leaves_the_layer_up(services, pool):
    """A pool with no connection left is a busy client, not a dead Redis: that one read
    misses the layer, the layer is not skipped afterwards, and nothing is raised."""
    require(services.redis.url, "redis")
    if pool == "blocking":  # waits up to its timeout, then gives up
        client = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
            services.redis.url, max_connections=2, timeout=0.05))  # fmt: skip
    else:
        client = redis.Redis.from_url(services.redis.url, max_connections=2)
    ns = namespace()
    writer = redis.Redis.from_url(services.redis.url)
    lent = Cache([(RedisLayer(writer), 300)], namespace=ns, redis=writer, subscribe=False)
    lent.set("k", "v")
    cache = Cache(
        [(RedisLayer(client), 300)], namespace=ns, redis=client, subscribe=False, strict=True
    )  # fmt: skip
    held = [client.connection_pool.get_connection() for _ in range(2)]
    try:
        assert cache.get("k", "miss") == "miss"  # no connection: a miss, not an exception
        layers = cache.stats()["layers"]
        assert layers["redis"]["errors"] == 0 and layers["redis"]["busy"] == 1
        assert cache.slots[0].down_until == 0.0
        for connection in held:
            client.connection_pool.release(connection)
        held = []
        assert cache.get("k") == "v"  # at once: the layer was never set aside
    finally:
        for connection in held:
            client.connection_pool.release(connection)
        cache.close()
        lent.close()
        client.close()
        writer.close()


def test_a_namespace_exported_and_imported_keeps_values_ttls_and_validity(redis_client):
    ns = namespace()
    cache = Cache([(RedisLayer(redis_client), 3600)], namespace=ns, redis=redis_client, jitter=0)
    cache.set_many({f"page:{i}": f"v{i}" for i in range(30)}, ttl_s=600, tags=["pages"])
    cache.set("gone", "old", tags=["doomed"])
    dump = io.BytesIO()
    assert backup.export_namespace(redis_client, ns, dump) == 31
    cache.invalidate(tags=["doomed"])  # after the backup
    redis_client.delete(*redis_client.keys(f"{ns}:*"))  # a cold cache
    assert cache.get("page:3") is None
    dump.seek(0)
    assert backup.import_namespace(redis_client, dump) == 31
    assert cache.get("page:3") == "v3" and 500 < redis_client.pttl(f"{ns}:page:3") / 1000 <= 600
    assert cache.get("gone") is None  # invalidated since the backup: an import does not revive it
    cache.close()


def test_hit_ratios_reach_the_console_through_the_agent(
    services, redis_client, control_plane_sqlite, tmp_path
):
    url, token, _log = control_plane_sqlite
    ns = namespace()
    cache = Cache([(MemoryLayer(), 60), (RedisLayer(redis_client), 300)], namespace=ns, redis=redis_client,
                  report_every_s=0.5)  # fmt: skip
    for i in range(4):
        cache.get_or_set(f"k{i}", lambda: "v")  # 4 misses, then 12 hits in memory
        for _ in range(3):
            cache.get(f"k{i}")
    stats = TargetConfig(type="cache", name="cache", address=services.redis.url, interval_s=0.5)
    try:
        with running_agent(url, token, tmp_path, stats, name="cache-stats", flush_interval_s=0.5):
            browser, _ = console_login(url, token=token)

            def overview_with_the_ratio() -> str:
                text = browser.get("/").text
                return text if f'data-cache="{ns}/memory"' in text else ""

            page = until("the console to show the cache's hit ratio", overview_with_the_ratio, every_s=0.3)
            browser.close()
        row = re.search(rf'data-cache="{ns}/memory"><td>{ns}</td><td>memory</td><td>([0-9.]+) %', page)
        assert row and float(row.group(1)) == 75.0  # 12 hits of 16 reads
    finally:
        cache.close()


def test_a_namespace_round_trips_through_an_s3_object(services, redis_client, control_plane):
    require(services.s3.endpoint, "s3")
    ns = namespace()
    cache = Cache([(RedisLayer(redis_client), 3600)], namespace=ns, redis=redis_client)
    cache.set_many({f"doc:{i}": {"i": i} for i in range(10)}, ttl_s=600)
    target = f"s3://coreplane-backups/{ns}.ndjson"
    exported = control_plane.coreplane("cache", "export", ns, "--to", target)
    assert exported.returncode == 0, exported.stderr
    assert "exported 10 entries" in exported.stdout
    redis_client.delete(*redis_client.keys(f"{ns}:*"))
    imported = control_plane.coreplane("cache", "import", target)
    assert imported.returncode == 0, imported.stderr
    assert cache.get("doc:7") == {"i": 7}
    missing = control_plane.coreplane("cache", "import", "s3://coreplane-backups/nothing-here.ndjson")
    assert missing.returncode != 0
    cache.close()
