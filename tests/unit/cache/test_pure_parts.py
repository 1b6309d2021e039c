"""The cache's parts that need no service: the in-process layer, serializers, prefix tags,
and the whole stack with only the in-process layer."""

import threading
import time

import pytest

from controlplane.cache import Cache, MemoryLayer
from controlplane.cache.invalidation import check_prefix, implicit_tags
from controlplane.cache.layers import memcached_key, pool_exhausted
from controlplane.cache.serializers import serializer
from controlplane.clock import ManualClock
from tests.support.timing import until


def test_the_memory_layer_evicts_least_recently_used_by_count_and_by_bytes():
    layer = MemoryLayer(max_entries=3, max_bytes=1000)
    layer.set_many({"a": b"1", "b": b"2", "c": b"3"}, ttl_s=60)
    assert layer.get("a") == b"1"  # a is now the most recently used
    layer.set_many({"d": b"4"}, ttl_s=60)
    assert layer.get_many(["a", "b", "c", "d"]) == {"a": b"1", "c": b"3", "d": b"4"}
    assert layer.evictions == 1
    layer.set_many({"big": b"x" * 990}, ttl_s=60)
    assert layer.size()[1] <= 1000 and layer.get("big") == b"x" * 990
    layer.set_many({"huge": b"x" * 2000}, ttl_s=60)  # larger than the whole layer: not stored
    assert layer.get("huge") is None and layer.get("big") is not None


def test_the_memory_layer_expires_entries():
    clock = ManualClock()
    layer = MemoryLayer(clock=clock)
    layer.set_many({"a": b"1", "b": b"2"}, ttl_s=0.5)
    clock.advance(0.25)
    assert layer.get("a") == b"1" and layer.get_many(["b"]) == {"b": b"2"}
    clock.advance(0.25)  # exactly its TTL (binary fractions: no rounding)
    assert layer.get("a") is None and layer.get_many(["b"]) == {} and layer.size() == (0, 0)


def test_serializers_round_trip_and_pickle_needs_an_opt_in():
    value = {"n": 1, "list": [1, "two"], "nested": {"ok": True}}
    for name in ("json", "msgpack"):
        codec = serializer(name)
        assert codec.loads(codec.dumps(value)) == value
    with pytest.raises(ValueError, match="allow_pickle=True"):
        serializer("pickle")
    codec = serializer("pickle", allow_pickle=True)
    assert codec.loads(codec.dumps({1, 2})) == {1, 2}


def test_prefixes_are_colon_segments_and_become_tags():
    assert implicit_tags("app", "user:42:profile") == ["prefix:app:user:", "prefix:app:user:42:"]
    assert implicit_tags("app", "plain") == []
    check_prefix("user:42:")
    with pytest.raises(ValueError, match="must end with ':'"):
        check_prefix("user:4")


def test_memcached_keys_stay_within_its_rules():
    assert memcached_key("app:user:1") == "app:user:1"
    long_key = memcached_key("k" * 300)
    spaced = memcached_key("a key with spaces")
    assert len(long_key) < 250 and " " not in spaced and spaced != "a key with spaces"


def test_an_in_process_cache_reads_through_once_per_key_under_concurrency():
    cache = Cache(namespace="unit")
    calls = []

    def loader():
        calls.append(1)
        # A slow origin, not a wait for a result: the window in which the other callers arrive.
        time.sleep(0.05)
        return {"v": 1}

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_set("k", loader))) for _ in range(50)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [{"v": 1}] * 50
    assert cache.get("k") == {"v": 1}
    cache.invalidate(keys=["k"])
    assert cache.get("k") is None
    with pytest.raises(Exception, match="needs Redis"):
        cache.invalidate(tags=["t"])


def test_a_stale_value_is_served_while_one_refresh_runs():
    clock = ManualClock()
    cache = Cache(namespace="swr", clock=clock)
    calls = []
    origin_answers = threading.Event()  # the refresh's origin stays slow until the test says

    def loader():
        calls.append(1)
        if len(calls) > 1:
            assert origin_answers.wait(timeout=10)
        return len(calls)

    assert cache.get_or_set("k", loader, ttl_s=0.05, stale_ttl_s=5) == 1
    clock.advance(0.049)  # within its TTL: fresh, nothing to refresh
    assert cache.get_or_set("k", loader, ttl_s=0.05, stale_ttl_s=5) == 1 and len(calls) == 1
    clock.advance(0.011)  # past its TTL, within the stale window
    # Served stale at once, while the refresh is still waiting on its origin.
    assert [cache.get_or_set("k", loader, ttl_s=0.05, stale_ttl_s=5) for _ in range(5)] == [1] * 5
    until("the background refresh to call its origin", lambda: len(calls) == 2)
    assert not origin_answers.is_set() and cache.get("k") == 1
    origin_answers.set()
    until("the refreshed value", lambda: cache.get("k") == 2)
    assert len(calls) == 2  # one background refresh for the five stale reads


def test_the_figures_reach_prometheus():
    from prometheus_client import CollectorRegistry, generate_latest

    from controlplane.cache.prometheus import CacheMetrics

    cache = Cache(namespace="prom")
    cache.get_or_set("a", lambda: 1)
    cache.get("a")
    registry = CollectorRegistry()
    registry.register(CacheMetrics(cache))
    text = generate_latest(registry).decode()
    assert 'coreplane_cache_hits_total{layer="memory",namespace="prom"} 1.0' in text
    assert 'coreplane_cache_misses_total{layer="memory",namespace="prom"} 1.0' in text
    assert 'coreplane_cache_entries{namespace="prom"} 1.0' in text


def _raised(call) -> BaseException:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception) as caught:
        call()
    return caught.value


def test_a_pool_with_no_connection_free_is_told_apart_from_a_backend_that_is_down():
    import socket
    import types

    import redis
    from pymemcache.pool import ObjectPool

    redis_pool = redis.ConnectionPool(max_connections=1)
    redis_pool.make_connection()  # connections are made lazily: no server needed to fill it
    assert pool_exhausted(_raised(redis_pool.make_connection))  # "Too many connections"
    memcached_pool = ObjectPool(types.SimpleNamespace, max_size=1)
    memcached_pool.get()
    assert pool_exhausted(_raised(memcached_pool.get))  # "Too many objects, 1 >= 1"

    with socket.socket() as sock:  # a port nothing listens on: a Redis that is down
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = redis.Redis(port=port, socket_connect_timeout=0.5, retry=None)
    assert not pool_exhausted(_raised(lambda: refused.get("k")))
    assert not pool_exhausted(RuntimeError("boom")) and not pool_exhausted(TimeoutError())
