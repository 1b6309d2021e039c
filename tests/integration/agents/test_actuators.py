"""Each actuator changes the real backend, directly and through the control plane."""

import subprocess
import uuid

import httpx
import pytest
import redis

from agents.actuators import ActuatorError, actuator
from agents.client import ControlPlaneClient
from agents.runtime import ActionLoop
from controlplane.cache import Cache, MemcachedLayer, MemoryLayer, RedisLayer
from tests.support.processes import free_port
from tests.support.services import require
from tests.support.timing import until


@pytest.fixture
def redis_pair(tmp_path):
    """A private primary and replica (the shared ones stay as they are)."""
    procs, ports = [], [free_port(), free_port()]
    for i, port in enumerate(ports):
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "",
                "--dbfilename", f"{port}.rdb"]  # fmt: skip
        if i:
            args += ["--replicaof", "127.0.0.1", str(ports[0])]
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
    replica = redis.Redis(port=ports[1])
    until("the private replica to sync", lambda: replica.info("replication").get("master_link_status") == "up",
          timeout_s=10, every_s=0.1, ignoring=(redis.ConnectionError,))  # fmt: skip
    yield ports
    for proc in procs:
        proc.terminate()
        proc.wait()


def test_promote_then_repoint(redis_pair):
    primary, replica = redis_pair
    out = actuator("redis.promote")({"address": f"redis://127.0.0.1:{replica}/0"})
    assert out["role"] == "master"
    assert redis.Redis(port=replica).info("replication")["role"] == "master"
    # The old primary now follows the promoted one.
    out = actuator("redis.repoint")(
        {"address": f"redis://127.0.0.1:{primary}/0", "primary_host": "127.0.0.1", "primary_port": replica}
    )
    info = redis.Redis(port=primary).info("replication")
    assert (info["role"], info["master_port"]) == ("slave", replica)


def test_cache_flush_by_key_prefix_and_tag(services):
    """The actuator invalidates what coreplane's cache library wrote, in every layer."""
    require(services.redis.url, "redis")
    client = redis.Redis.from_url(services.redis.url)
    namespace = f"flush-{uuid.uuid4().hex[:8]}"
    cache = Cache(
        [(MemoryLayer(), 60), (MemcachedLayer(services.memcached.servers), 300), (RedisLayer(client), 300)],
        namespace=namespace, redis=client,
    )  # fmt: skip
    tag = f"products-{uuid.uuid4().hex[:6]}"
    cache.set_many({f"user:{i}:profile": i for i in range(50)} | {"keep:me": 1}, tags=[])
    cache.set("catalogue", ["a", "b"], tags=[tag])
    cache.set("solo", "v")
    assert cache.get("user:7:profile") == 7 and cache.get("catalogue") == ["a", "b"]
    params = {"redis_url": services.redis.url, "memcached_servers": services.memcached.servers,
              "namespace": namespace}  # fmt: skip
    out = actuator("cache.flush")(params | {"prefix": "user:", "tags": [tag]})
    assert out["redis"]["tag_versions"] == {tag: 1, f"prefix:{namespace}:user:": 1}
    # The broadcast reaches this process's listener, which drops its memory layer's copies.
    until(
        "the prefix and the tag to be flushed here",
        lambda: cache.get("user:7:profile") is None and cache.get("catalogue") is None,
    )
    assert cache.get("keep:me") == 1  # another prefix
    out = actuator("cache.flush")(params | {"keys": ["solo"]})
    assert out["memcached"] == {"deleted": 1, "absent": 0}
    assert out["redis"]["removed"] == 1
    until("the key to be flushed here", lambda: cache.get("solo") is None)
    with pytest.raises(ActuatorError, match="must end with ':'"):
        actuator("cache.flush")(params | {"prefix": "user"})
    cache.close()


def test_celery_pool_grows(services, celery_worker):
    def processes() -> int:
        stats = celery_worker.control.inspect(timeout=2).stats()
        return len(next(iter(stats.values()))["pool"]["processes"])

    assert processes() == 1
    actuator("celery.pool")({"broker": services.rabbitmq.url, "op": "grow", "n": 2})
    until("the pool to grow to 3 processes", lambda: processes() == 3, timeout_s=15, every_s=0.5)


def test_an_action_runs_through_the_control_plane_and_failures_carry_the_reason(control_plane, haproxy_lb):
    admin = {"Authorization": f"Bearer {control_plane.token}"}
    name = f"act-{uuid.uuid4().hex[:6]}"
    agent = httpx.post(
        f"{control_plane.url}/api/v1/agents/register", json={"name": name}, headers=admin
    ).json()
    sock, _ = haproxy_lb({"s1": free_port()})

    def create(params: dict) -> dict:
        body = {"kind": "haproxy.set_server", "target": "haproxy", "agent": name, "params": params}
        return httpx.post(f"{control_plane.url}/api/v1/actions", json=body, headers=admin).json()

    drain = create({"socket": sock, "backend": "app", "server": "s1", "state": "drain"})
    missing = create({"socket": sock, "backend": "app", "server": "s9", "state": "drain"})
    client = ControlPlaneClient(control_plane.url, agent["token"], 10)
    reports = ActionLoop(client, agent_id=agent["id"], wait_s=2).run_once()
    client.close()
    assert {r["id"]: r["ok"] for r in reports} == {drain["id"]: True, missing["id"]: False}
    done = httpx.get(f"{control_plane.url}/api/v1/actions/{drain['id']}", headers=admin).json()
    assert done["state"] == "succeeded"
    assert done["result"]["output"]["status"] == "DRAIN"
    assert [a["to_state"] for a in done["audit"]] == ["pending", "dispatched", "running", "succeeded"]
    failed = httpx.get(f"{control_plane.url}/api/v1/actions/{missing['id']}", headers=admin).json()
    assert failed["state"] == "failed"
    assert "s9" in failed["result"]["error"]
    # An unknown kind never reaches an agent: the API names the known ones.
    bogus = httpx.post(
        f"{control_plane.url}/api/v1/actions",
        json={"kind": "redis.explode", "target": "redis", "agent": name},
        headers=admin,
    )
    assert bogus.status_code == 422
    assert "unknown action kind 'redis.explode'; known: cache.flush, cache.invalidate" in bogus.text


def test_an_agent_refuses_a_kind_it_has_no_actuator_for():
    with pytest.raises(
        ActuatorError, match=r"unknown action kind 'redis\.explode'; this agent knows: cache\.flush"
    ):
        actuator("redis.explode")
