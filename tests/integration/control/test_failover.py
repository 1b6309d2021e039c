"""Redis failover, for real: kill -9 the primary of a primary + 2 replicas while a writer
using coreplane's client helper runs. The agent reports it at once, the catalog turns it
critical, the leader's `redis-failover` rule starts a failover, the agent promotes the
replica with the highest offset and repoints the other; the catalog and http_sd show
the new primary, and the writer carries on without a restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from agents.config import AgentConfig, TargetConfig
from agents.daemon import Agent, load_or_register
from controlplane.redis_primary import PrimaryResolver, primary_redis
from tests.support.redis_topology import redis_topology
from tests.support.timing import until


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


class Writer(threading.Thread):
    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.client, self.acked, self.errors = client, [], []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                self.client.set(f"w:{n}", n)
                self.acked.append((time.monotonic(), n))
            except Exception as exc:  # noqa: BLE001 - an error reaching the application is a failure
                self.errors.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
            time.sleep(0.005)  # pacing: a steady stream of writes, not a wait for anything


def test_a_killed_primary_is_replaced_and_the_writer_follows(control_plane_sqlite, tmp_path):
    url, token, log = control_plane_sqlite
    admin = {"Authorization": f"Bearer {token}"}
    with redis_topology(replicas=2) as topo:
        address = {n: f"127.0.0.1:{n.port}" for n in topo.nodes}
        config = AgentConfig(
            name="failover-agent",
            control_plane_url=url,
            token_file=tmp_path / "agent.json",
            spool_dir=tmp_path / "spool",
            heartbeat_interval_s=1,
            flush_interval_s=1,
            targets=[
                TargetConfig(
                    type="redis",
                    name="redis",
                    address=f"redis://{address[n]}/0",
                    role="primary" if n is topo.primary else "replica",
                    interval_s=0.5,
                    timeout_s=0.5,
                )
                for n in topo.nodes
            ],
        )
        agent = Agent(config, load_or_register(config, token))
        agent.start()
        try:

            def catalog() -> dict:
                response = httpx.get(f"{url}/api/v1/services/redis", headers=admin)
                return response.json() if response.status_code == 200 else {}

            def healths() -> list[str]:
                return [i["health"] for i in catalog().get("instances", [])]

            until("three passing instances", lambda: healths() == ["passing"] * 3, logs=lambda: _tail(log))
            resolver = PrimaryResolver(url, token, "redis")
            assert resolver.primary() == ("127.0.0.1", topo.primary.port)
            writer = Writer(primary_redis(resolver))
            writer.start()
            until("the writer's first writes", lambda: len(writer.acked) >= 20)

            killed_at = time.monotonic()
            topo.primary.kill()

            def new_primary() -> str | None:
                primaries = [
                    i["address"] for i in catalog()["instances"]
                    if i["role"] == "primary" and i["health"] == "passing" and i["address"] != address[topo.primary]
                ]  # fmt: skip
                return primaries[0] if primaries else None

            try:
                promoted = until("a promoted replica in the catalog", new_primary, logs=lambda: _tail(log))
            except BaseException:
                for path in ("rules/evaluations", "actions?top_level=false", "services/redis"):
                    print(path, httpx.get(f"{url}/api/v1/{path}", headers=admin).json())
                print(log.read_text()[-5000:])
                raise
            new_node = next(n for n in topo.replicas if address[n] == promoted)
            other = next(n for n in topo.replicas if n is not new_node)
            # The other replica follows the new primary.
            until("the other replica to follow", lambda: other.client().info("replication").get("master_port")
                  == new_node.port)  # fmt: skip
            # http_sd labels the new primary as such.
            sd = httpx.get(f"{url}/api/v1/sd/prometheus", headers=admin).json()
            roles = {g["targets"][0]: g["labels"].get("coreplane_role") for g in sd}
            assert roles[promoted] == "primary"
            assert roles[address[other]] == "replica"
            # The writer continues against the new primary, without a restart.
            until(
                "50 writes after the failover",
                lambda: sum(t > killed_at + 0.2 for t, _ in writer.acked) >= 50,
            )
            writer.stop.set()
            writer.join(timeout=10)
            assert writer.errors == [], writer.errors[:3]
            last = writer.acked[-1][1]
            assert new_node.client().get(f"w:{last}") == str(last).encode()

            actions = httpx.get(f"{url}/api/v1/actions", params={"kind": "failover"}, headers=admin).json()
            assert len(actions) == 1 and actions[0]["state"] == "succeeded", actions
            assert actions[0]["rule"] == "redis-failover"
            detail = httpx.get(f"{url}/api/v1/actions/{actions[0]['id']}", headers=admin).json()
            assert [c["kind"] for c in detail["children"]] == ["redis.promote", "redis.repoint"]
            assert detail["evaluations"][0]["outcome"] == "fired"
            assert [a["to_state"] for a in detail["audit"]] == ["pending", "running", "succeeded"]
            # Every transition is in the instance's history.
            history = httpx.get(
                f"{url}/api/v1/services/redis/instances/{address[topo.primary]}/history", headers=admin
            ).json()
            assert [h["status"] for h in history if h["event_type"] == "catalog.health"][:1] == ["critical"]
            resolver.close()
        finally:
            agent.interrupt()
            agent.stop()
