"""The multi-layer cache against the raw engines, in one run:

- cache_l1_hit_vs_redis_get: an in-process hit vs a bare redis-py GET of the same value;
- cache_zipf_hit_ratio: a Zipf(1.1) workload over 1,000,000 keys with the in-process layer
  sized at 10 % of them (memory + Memcached + Redis): overall and per-layer hit ratios;
- cache_invalidation_p99_ms: a tag bump until three other processes stop serving the
  entry (they poll it), p99;
- cache_miss_overhead: a full miss through every layer (read through, store everywhere)
  vs the raw loader + a redis-py SET.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid

import redis

from controlplane.cache import Cache, MemcachedLayer, MemoryLayer, RedisLayer
from controlplane.settings import Settings
from tests.support.results import Result
from tests.support.services import ROOT

KEYS = int(os.environ.get("BENCH_CACHE_KEYS", 1_000_000))
REQUESTS = int(os.environ.get("BENCH_CACHE_REQUESTS", 1_000_000))
VALUE = {"id": 12345, "name": "a product", "price": 19.99, "tags": ["a", "b"]}


def _stack(settings: Settings, client: redis.Redis, namespace: str, l1_entries: int) -> Cache:
    return Cache(
        [(MemoryLayer(max_entries=l1_entries, max_bytes=2**30), 3600),
         (MemcachedLayer(settings.memcached.servers), 3600), (RedisLayer(client), 3600)],
        namespace=namespace, redis=client, report_every_s=0,
    )  # fmt: skip


def _per_call(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


def l1_vs_redis(settings: Settings, client: redis.Redis) -> Result:
    cache = _stack(settings, client, f"b{uuid.uuid4().hex[:8]}", 1000)
    cache.set("hot", VALUE)
    raw_key = f"bench:raw:{uuid.uuid4().hex}"
    client.set(raw_key, json.dumps(VALUE))
    assert cache.get("hot") == VALUE
    ours = min(_per_call(lambda: cache.get("hot"), 200_000) for _ in range(3))
    theirs = min(_per_call(lambda: json.loads(client.get(raw_key)), 10_000) for _ in range(3))
    client.delete(raw_key)
    cache.close()
    return Result(
        name="cache_l1_hit_vs_redis_get", ours=round(ours * 1e6, 3), baseline=round(theirs * 1e6, 3),
        unit="µs per read (in-process hit vs redis-py GET + JSON decode of the same value)",
        goal=">= 20x faster (ratio <= 0.05)", met=theirs / ours >= 20,
    )  # fmt: skip


def _zipf_sampler(n: int, s: float):  # type: ignore[no-untyped-def]
    cdf = list(itertools.accumulate(1 / k**s for k in range(1, n + 1)))
    total = cdf[-1]
    rng = random.Random(42)
    return lambda: bisect.bisect_left(cdf, rng.random() * total)


def zipf(settings: Settings, client: redis.Redis) -> list[Result]:
    namespace = f"z{uuid.uuid4().hex[:8]}"
    cache = _stack(settings, client, namespace, KEYS // 10)
    draw = _zipf_sampler(KEYS, 1.1)
    # Warm up with as many requests as are measured: the figure is the steady state.
    for _ in range(REQUESTS):
        key = f"k{draw()}"
        cache.get_or_set(key, lambda: VALUE)
    base = {name: dict(layer) for name, layer in cache.stats()["layers"].items()}
    loads_before = cache.loads
    for _ in range(REQUESTS):
        key = f"k{draw()}"
        cache.get_or_set(key, lambda: VALUE)
    layers = cache.stats()["layers"]
    hits = {name: layers[name]["hits"] - base[name]["hits"] for name in ("memory", "memcached", "redis")}
    loads = cache.loads - loads_before
    overall = sum(hits.values()) / REQUESTS
    share = ", ".join(f"{name} {h / REQUESTS:.1%}" for name, h in hits.items())
    cache.close()
    _drop_namespace(client, namespace)
    return [
        Result(
            name="cache_zipf_hit_ratio", ours=round(overall, 4), baseline=None,
            unit=f"hits / requests, Zipf(1.1) over {KEYS:,} keys, L1 = 10 % of keys, {REQUESTS:,} requests "
                 f"after as many to warm up; by layer: {share}; loads {loads / REQUESTS:.1%}",
            goal=">= 0.90", met=overall >= 0.90,
        )
    ]  # fmt: skip


def _drop_namespace(client: redis.Redis, namespace: str) -> None:
    batch = []
    for key in client.scan_iter(match=f"{namespace}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)


LISTENER = """
import json, sys, time, redis
from controlplane.cache import Cache, MemoryLayer, RedisLayer
client = redis.Redis.from_url(sys.argv[1])
cache = Cache([(MemoryLayer(), 3600), (RedisLayer(client), 3600)], namespace=sys.argv[2], redis=client,
              report_every_s=0)
seen, detected = None, []
print("ready", flush=True)
deadline = time.time() + float(sys.argv[3])
while time.time() < deadline:
    value = cache.get("entry")
    if value is None and seen is not None:
        detected.append((seen, time.time()))
    if value is None:
        value = cache.get_or_set("entry", lambda: client.get("round").decode(), tags=["bench"])
    seen = value
    time.sleep(0.0002)
print(json.dumps(detected), flush=True)
"""


def invalidation_p99(settings: Settings, client: redis.Redis) -> Result:
    namespace, rounds = f"i{uuid.uuid4().hex[:8]}", 200
    client.set("round", "0")
    cache = Cache([(RedisLayer(client), 3600)], namespace=namespace, redis=client, report_every_s=0)
    duration = 4 + rounds * 0.03
    listeners = [
        subprocess.Popen([sys.executable, "-c", LISTENER, settings.redis.url, namespace, str(duration)],
                         cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    for proc in listeners:
        assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    sent = {}
    for r in range(1, rounds + 1):
        previous = client.get("round").decode()
        client.set("round", str(r))
        sent[previous] = time.time()
        cache.invalidate(tags=["bench"])
        time.sleep(0.03)
    latencies = []
    for proc in listeners:
        out, _ = proc.communicate(timeout=duration + 30)
        for seen, at in json.loads(out.strip().splitlines()[-1]):
            if seen in sent:
                latencies.append((at - sent[seen]) * 1000)
    cache.close()
    client.delete("round")
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    return Result(
        name="cache_invalidation_p99_ms", ours=round(p99, 2), baseline=None,
        unit=f"ms from a tag bump until 3 other processes stop serving the entry ({len(latencies)} "
             f"samples; median {statistics.median(latencies):.2f} ms; they poll every 0.2 ms)",
        goal="< 50 ms", met=p99 < 50,
    )  # fmt: skip


def miss_overhead(settings: Settings, client: redis.Redis) -> Result:
    cache = _stack(settings, client, f"m{uuid.uuid4().hex[:8]}", 100_000)
    counter = itertools.count()
    n = 3000
    ours = min(
        _per_call(lambda: cache.get_or_set(f"miss:{next(counter)}", lambda: VALUE), n) for _ in range(3)
    )
    raw = itertools.count()
    theirs = min(
        _per_call(lambda: client.set(f"bench:rawmiss:{next(raw)}", json.dumps(VALUE), ex=60), n)
        for _ in range(3)
    )
    cache.close()
    _drop_namespace(client, cache.namespace)
    return Result(
        name="cache_miss_overhead", ours=round(ours * 1e6, 1), baseline=round(theirs * 1e6, 1),
        unit="µs per full miss: read through memory, Memcached and Redis, load, store in all three "
             "(vs the loader + one redis-py SET)",
        goal="report", met=None,
    )  # fmt: skip


def run(settings: Settings) -> list[Result]:
    if not (settings.redis.url and settings.memcached.servers):
        raise SystemExit(
            "the cache benchmarks need Redis and Memcached: scripts/services.sh up redis memcached"
        )
    client = redis.Redis.from_url(settings.redis.url)
    results = [
        l1_vs_redis(settings, client),
        invalidation_p99(settings, client),
        miss_overhead(settings, client),
    ]
    results += zipf(settings, client)
    client.close()
    return results
