"""Both Memcached nodes through pymemcache, and keys spread across them by HashClient."""

import uuid

from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

from tests.support.services import reach, require


def _nodes(services):
    require(services.memcached.servers, "memcached")
    return [(h, int(p)) for h, p in (s.rsplit(":", 1) for s in services.memcached.servers)]


def test_each_node_stores_and_returns_a_value(services):
    nodes = _nodes(services)
    assert len(nodes) == 2
    for node in nodes:
        client = Client(node, connect_timeout=2, timeout=2)
        key, value = f"smoke-{uuid.uuid4().hex}", uuid.uuid4().bytes
        reach("memcached", node, client.set, key, value, expire=60)
        assert client.get(key) == value
        client.close()


def test_hash_client_spreads_keys_over_both_nodes(services):
    nodes = _nodes(services)
    client = HashClient(nodes, connect_timeout=2, timeout=2, use_pooling=False)
    keys = [f"spread-{uuid.uuid4().hex}" for _ in range(200)]
    reach("memcached", nodes, client.set_many, dict.fromkeys(keys, b"x"), expire=60)
    owners = {client.hasher.get_node(k) for k in keys}
    assert len(owners) == 2, "consistent hashing put every key on one node"
    assert client.get_many(keys) == dict.fromkeys(keys, b"x")
