"""tests.support.redis_topology: a private primary + 2 replicas replicates, nobody promotes alone, reset() rebuilds."""

import time

import pytest

from tests.support.redis_topology import redis_topology, wait_for_new_primary
from tests.support.timing import until


def _replicas_have(topology, key: str, value: bytes) -> bool:  # type: ignore[no-untyped-def]
    return until(
        f"every replica to have {key}",
        lambda: all(r.client().get(key) == value for r in topology.replicas),
        5,
        0.02,
    )


def test_topology_replicates_waits_for_a_manager_and_resets():
    with redis_topology(replicas=2, sentinels=0) as topology:
        assert topology.current_primary() is topology.primary
        topology.primary.client().set("k", "before")
        assert _replicas_have(topology, "k", b"before")

        old = topology.primary
        old.kill()
        assert not old.alive()
        # Without Sentinel (or coreplane) the replicas stay read-only replicas of a dead primary.
        with pytest.raises(TimeoutError):
            wait_for_new_primary(topology, old, timeout_s=1.5)
        assert topology.current_primary() is None

        started = time.monotonic()
        topology.reset()
        assert time.monotonic() - started < 5
        assert topology.current_primary() is topology.primary
        assert topology.primary.client().info("replication")["connected_slaves"] == 2
        for replica in topology.replicas:
            info = replica.client().info("replication")
            assert (info["master_port"], info["master_link_status"]) == (topology.primary.port, "up")
        assert topology.primary.client().get("k") is None  # reset starts from empty data
        topology.primary.client().set("k", "after")
        assert _replicas_have(topology, "k", b"after")
