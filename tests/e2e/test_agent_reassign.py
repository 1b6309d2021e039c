"""An agent whose instance an admin reassigned to another agent keeps working (issue 12,
finding 3 follow-up): it stops reporting that target's health, says so once (log and an
agent.target_refused event), and keeps its heartbeat, its other targets and its batches.
Real `coreplane serve` on SQLite, real agents, real Redis servers."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis

from agents.client import ControlPlaneClient
from agents.config import TargetConfig
from agents.runtime import Buffer, Shipper, instance_of
from agents.spool import Spool
from tests.support.agents import running_agent
from tests.support.processes import free_port
from tests.support.services import require
from tests.support.timing import until


@pytest.fixture
def private_redis(tmp_path):
    """(process, port) of a Redis of the test's own, to stop mid-test (the shared one stays up)."""
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
            "--save", "", "--dbfilename", "private.rdb"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    until("the private redis-server answers", lambda: _answers(port), timeout_s=10)
    yield proc, port
    proc.terminate()
    proc.wait()


def _answers(port: int) -> bool:
    try:
        return redis.Redis(port=port, socket_timeout=1).ping()
    except redis.ConnectionError:
        return False


def _instance(api: httpx.Client, service: str, address: str) -> dict | None:
    found = api.get(f"/api/v1/services/{service}")
    if found.status_code != 200:
        return None
    return next((i for i in found.json()["instances"] if i["address"] == address), None)


def _register(api: httpx.Client, tmp_path, name: str) -> dict:
    """Register ``name`` and leave its token file where running_agent looks for it."""
    identity = api.post("/api/v1/agents/register", json={"name": name})
    assert identity.status_code == 201, identity.text
    (tmp_path / f"{name}.json").write_text(json.dumps(identity.json()))
    return identity.json()


def _events(api: httpx.Client, **query: str) -> list[dict]:
    return api.get("/api/v1/events", params=query).json()["events"]


def _count(api: httpx.Client, metric: str, service: str, since: str, *tags: str) -> float:
    """Points of ``metric`` stored since ``since`` (tags: key=value filters)."""
    query = {"metric_type": metric, "service_name": service, "start": since, "agg": "count", "source": "raw"}
    found = api.get("/api/v1/metrics", params={**query, "tags": list(tags)}).json()
    return sum(v or 0 for s in found["series"] for _t, v in s["points"])


def _now(minus_s: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(seconds=minus_s)).isoformat()


def test_the_old_agent_keeps_its_heartbeat_and_batches_after_a_reassignment(
    control_plane_sqlite, services, private_redis, tmp_path
):
    url, token, log = control_plane_sqlite
    require(services.redis.url, "redis")
    proc, port = private_redis
    moved = f"127.0.0.1:{port}"
    watched = {"type": "redis", "name": "redis", "address": f"redis://{moved}/0", "interval_s": 0.3,
               "timeout_s": 1}  # fmt: skip
    shared = TargetConfig(type="redis", name="shared-redis", address=services.redis.url, interval_s=0.3)
    kept = instance_of(services.redis.url)
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    # The first agent's points of the instance it loses carry a tag of their own.
    mine = TargetConfig(**watched, tags={"watcher": "first"})
    with running_agent(url, token, tmp_path, mine, shared, name="first") as first:
        until(
            "the first agent owns both instances, passing",
            lambda: all(
                (i := _instance(api, s, a)) and i["agent"] == "first" and i["health"] == "passing"
                for s, a in (("redis", moved), ("shared-redis", kept))
            ),
            logs=log.read_text,
        )
        _register(api, tmp_path, "second")
        reassigned = api.post(f"/api/v1/services/redis/instances/{moved}/owner", json={"agent": "second"})
        assert reassigned.status_code == 200, reassigned.text
        seen = _instance(api, "shared-redis", kept)["last_seen_at"]
        with running_agent(url, token, tmp_path, TargetConfig(**watched), name="second"):
            (refused,) = until(
                "the first agent says it lost the instance",
                lambda: _events(api, event_type="agent.target_refused"),
                timeout_s=10,
            )
            assert refused["details"]["agent"] == "first" and refused["details"]["instance"] == moved
            assert "second" in refused["details"]["reason"]
            # Its heartbeat goes in again without that target: its other instance stays fresh.
            until(
                "the first agent's heartbeats are accepted again",
                lambda: _instance(api, "shared-redis", kept)["last_seen_at"] > seen,
                timeout_s=10,
            )
            assert first.heartbeat.failures == 0
            # The lost instance fails: its health is the second agent's to report, while the
            # first agent's batches (now without health events about it) keep arriving.
            proc.terminate()
            proc.wait()
            until(
                "the second agent reports the instance critical",
                lambda: _instance(api, "redis", moved)["health"] == "critical",
                timeout_s=15,
            )
            after = _now()
            until(
                "the first agent's metrics of both targets keep flowing",
                lambda: (
                    _count(api, "coreplane_redis_up", "shared-redis", after) >= 3
                    and _count(api, "coreplane_redis_up", "redis", after, "watcher=first") >= 3
                ),
                timeout_s=15,
            )
            until("the first agent's spool drains", lambda: first.spool.depth()[0] == 0, timeout_s=10)
        other = _instance(api, "shared-redis", kept)
        assert other["agent"] == "first" and other["health"] == "passing"
        history = api.get(f"/api/v1/services/shared-redis/instances/{kept}/history").json()
        assert "critical" not in json.dumps(history)
        assert _instance(api, "redis", moved)["agent"] == "second"
    assert not (tmp_path / "dead-letter").exists(), (tmp_path / "dead-letter" / "reasons.log").read_text()
    assert len(_events(api, event_type="agent.target_refused")) == 1  # said once


def test_a_batch_with_a_health_event_about_a_reassigned_instance_loses_only_that_event(
    control_plane_sqlite, tmp_path
):
    url, token, _log = control_plane_sqlite
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    first = _register(api, tmp_path, "first")
    _register(api, tmp_path, "second")
    targets = [{"service": "redis", "kind": "redis", "address": a, "status": "passing"}
               for a in ("10.0.0.1:6379", "10.0.0.2:6379")]  # fmt: skip
    beat = {"agent": "first", "version": "1", "hostname": "h", "uptime_s": 1, "targets": targets}
    as_first = {"Authorization": f"Bearer {first['token']}"}
    assert api.post("/api/v1/agents/heartbeat", json=beat, headers=as_first).status_code == 202
    assert api.post(
        "/api/v1/services/redis/instances/10.0.0.1:6379/owner", json={"agent": "second"}
    ).is_success
    # A batch collected before the agent heard of the reassignment (e.g. spooled while the
    # control plane was away): health events about both instances, and metrics.
    at = _now()
    health = [{"event_type": "health", "service_name": "redis", "timestamp": at, "status": "critical",
               "details": {"instance": a, "type": "redis", "message": "down"}}
              for a in ("10.0.0.1:6379", "10.0.0.2:6379")]  # fmt: skip
    metrics = [{"metric_type": "coreplane_test_value", "service_name": "redis", "timestamp": at,
                "value": float(i), "tags": {}} for i in range(5)]  # fmt: skip
    buffer, spool = Buffer(), Spool(tmp_path / "spool", 1 << 20)
    client = ControlPlaneClient(url, first["token"], timeout_s=10)
    shipper = Shipper(client, spool, buffer, "first")
    buffer.add(metrics=metrics, events=health)
    shipper.run_once()
    # What is left of the batch took its place in the spool under a new id; the shipper
    # was woken to send it (and the agent.target_refused event) at once.
    assert buffer.urgent.is_set()
    until("the rest of the batch is delivered", lambda: _sent_all(shipper), timeout_s=10)
    client.close()
    assert not (tmp_path / "dead-letter").exists(), (tmp_path / "dead-letter" / "reasons.log").read_text()
    assert _count(api, "coreplane_test_value", "redis", _now(minus_s=600)) == 5
    stored = [e["details"]["instance"] for e in _events(api, event_type="health", service_name="redis")]
    assert stored == ["10.0.0.2:6379"]
    assert _instance(api, "redis", "10.0.0.2:6379")["health"] == "critical"
    assert _instance(api, "redis", "10.0.0.1:6379")["health"] == "passing"  # the second agent's to report
    (refused,) = _events(api, event_type="agent.target_refused")
    assert refused["details"]["instance"] == "10.0.0.1:6379"


def _sent_all(shipper: Shipper) -> bool:
    shipper.run_once()
    return shipper.spool.depth()[0] == 0
