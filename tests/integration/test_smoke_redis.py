"""Redis primary, its two replicas and the three Sentinels, through redis-py."""

import uuid

import redis
from redis.sentinel import Sentinel

from tests.support.services import reach, require
from tests.support.timing import until


def test_primary_write_reaches_both_replicas(services):
    require(services.redis.url, "redis")
    primary = redis.Redis.from_url(services.redis.url, socket_timeout=2)
    key, value = f"smoke:{uuid.uuid4()}", uuid.uuid4().hex.encode()
    reach("redis", services.redis.url, primary.set, key, value, ex=60)
    assert len(services.redis.replica_urls) == 2
    for url in services.redis.replica_urls:
        replica = redis.Redis.from_url(url, socket_timeout=2)
        info = reach("redis", url, replica.info, "replication")
        assert info["role"] == "slave"
        assert info["master_link_status"] == "up"
        until(f"replica {url} to receive the write", lambda: replica.get(key) == value, 5, 0.02)  # noqa: B023
        assert replica.get(key) == value, f"replica {url} did not receive the write within 5 s"


def test_sentinels_agree_on_the_primary(services):
    require(services.redis.sentinel_addrs, "redis")
    addrs = [(h, int(p)) for h, p in (a.rsplit(":", 1) for a in services.redis.sentinel_addrs)]
    assert len(addrs) == 3
    sentinel = Sentinel(addrs, socket_timeout=2)
    name = services.redis.sentinel_master
    host, port = reach("redis", services.redis.sentinel_addrs, sentinel.discover_master, name)
    assert redis.Redis(host, port, socket_timeout=2).info("replication")["role"] == "master"
    for h, p in addrs:
        info = redis.Redis(h, p, socket_timeout=2).sentinel_master(name)
        assert (info["ip"], info["port"]) == (host, port), f"sentinel {h}:{p} disagrees"
        assert info["num-other-sentinels"] == 2, f"sentinel {h}:{p} does not see the other two"
        assert info["num-slaves"] == 2
