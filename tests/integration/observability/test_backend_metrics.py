"""GET /metrics/backends on a real `coreplane serve`: points sent through the ingest API,
and a real agent watching the real Redis."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.config import TargetConfig
from tests.support.agents import running_agent
from tests.support.serve import running_control_plane
from tests.support.services import require
from tests.support.stores import migrated_url
from tests.support.timing import until


@pytest.fixture(params=["sqlite", "postgresql"])
def serve(request, services, tmp_path):
    """(URL, admin token) of a fresh serve on each kind of store."""
    with (
        migrated_url(request.param, tmp_path, services) as url,
        running_control_plane(url, log=tmp_path / "log") as found,
    ):
        yield found


def _scrape(url: str, token: str) -> dict:
    """{family name: (type, help, [(labels, value)])}, as Prometheus scrapes it with a token."""
    answer = httpx.get(f"{url}/metrics/backends", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        f.name: (f.type, f.documentation, [(s.labels, s.value) for s in f.samples])
        for f in text_string_to_metric_families(answer.text)
    }


def _at(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


def test_the_latest_value_of_each_recent_series_under_its_own_name(serve):
    url, token = serve
    lab = f"lab-{uuid.uuid4().hex[:6]}"
    node = {"instance": "10.0.0.1:6379"}
    points = [
        # The Redis answered as a master, then stopped answering: only the newest series stays.
        ("coreplane_redis_up", _at(3), 1, {**node, "role": "master"}),
        ("coreplane_redis_up", _at(1), 0, node),
        ("coreplane_redis_used_memory_bytes", _at(3), 10, node),
        ("coreplane_redis_used_memory_bytes", _at(1), 20, node),
        ("coreplane_redis_keyspace_hits_total", _at(1), 5, {**node, "db.name": "x", "service": "t"}),
        ("coreplane_redis_replica_lag_bytes", _at(1), 7, {**node, "replica": "10.0.0.2:6379"}),
        ("coreplane_redis_replica_lag_bytes", _at(1), 9, {**node, "replica": "10.0.0.3:6379"}),
        ("coreplane_redis_old_figure", _at(20 * 60), 1, node),  # older than the window
    ]
    batch = {
        "batch_id": uuid.uuid4().hex, "agent": "test",
        "metrics": [{"metric_type": n, "service_name": lab, "timestamp": t, "value": v, "tags": tags}
                    for n, t, v, tags in points], "events": [],
    }  # fmt: skip
    sent = httpx.post(f"{url}/api/v1/ingest", json=batch, headers={"Authorization": f"Bearer {token}"})
    assert sent.status_code == 202, sent.text

    families = _scrape(url, token)
    mine = {name: (kind, doc, [s for s in samples if s[0]["service"] == lab])
            for name, (kind, doc, samples) in families.items()}  # fmt: skip
    assert mine["coreplane_redis_up"][2] == [({"service": lab, "instance": "10.0.0.1:6379"}, 0.0)]
    assert mine["coreplane_redis_used_memory_bytes"][2] == [({"service": lab, **node}, 20.0)]
    kind, doc, samples = mine["coreplane_redis_keyspace_hits_total"]
    assert kind == "gauge" and "counter" in doc and "rate()" in doc
    assert samples == [
        ({"service": lab, "instance": "10.0.0.1:6379", "db_name": "x", "tag_service": "t"}, 5.0)
    ]
    lags = sorted((s[0]["replica"], s[1]) for s in mine["coreplane_redis_replica_lag_bytes"][2])
    assert lags == [("10.0.0.2:6379", 7.0), ("10.0.0.3:6379", 9.0)]
    assert "coreplane_redis_old_figure" not in families


def test_catalog_health_and_agents_beside_a_real_agents_figures(control_plane_sqlite, services, tmp_path):
    require(services.redis.url, "redis")
    url, token, _ = control_plane_sqlite
    service = f"cache-{uuid.uuid4().hex[:6]}"
    target = TargetConfig(type="redis", name=service, address=services.redis.url, interval_s=1, timeout_s=1)
    address = services.redis.url.split("//")[1].split("/")[0]
    with running_agent(url, token, tmp_path, target, name="metrics-agent"):

        def reported() -> tuple[list, list, list] | None:
            families = _scrape(url, token)
            health = [s for s in families["coreplane_instance_health"][2] if s[0]["service"] == service]
            up = [
                s for s in families.get("coreplane_redis_up", ("", "", []))[2] if s[0]["service"] == service
            ]
            seen = [v for labels, v in families["coreplane_agent_last_seen_timestamp_seconds"][2]
                    if labels == {"agent": "metrics-agent"}]  # fmt: skip
            return (health, up, seen) if health and up and seen else None

        # The first heartbeat (agent last seen) may come after the first batch (health, up).
        health, up, seen = until("the agent's health, up and last-seen series", reported, 20, 0.2)
    assert health == [({"service": service, "instance": address, "kind": "redis", "role": "primary"}, 1.0)]
    assert up == [({"service": service, "instance": address, "role": "master"}, 1.0)]
    assert len(seen) == 1 and abs(seen[0] - time.time()) < 30


def test_the_estate_is_not_served_without_a_viewer_credential(control_plane_sqlite):
    """It names every instance, address and agent: a credential, like /api/v1/metrics."""
    url, token, _ = control_plane_sqlite
    assert httpx.get(f"{url}/metrics").status_code == 200  # the process's own figures stay open
    missing = httpx.get(f"{url}/metrics/backends")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = httpx.get(f"{url}/metrics/backends", headers={"Authorization": "Bearer not-a-token"})
    assert wrong.status_code == 401
    viewer = httpx.post(f"{url}/api/v1/tokens", json={"name": "prometheus", "role": "viewer"},
                        headers={"Authorization": f"Bearer {token}"}).json()["token"]  # fmt: skip
    assert (
        httpx.get(f"{url}/metrics/backends", headers={"Authorization": f"Bearer {viewer}"}).status_code == 200
    )
