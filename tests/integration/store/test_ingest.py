"""POST /api/v1/ingest on both dialects: idempotent, atomic, limits enforced."""

import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from controlplane.app import create_app
from tests.support.stores import ADMIN, make_settings


def now() -> datetime:
    return datetime.now(UTC)


def points(n: int, *, at: datetime | None = None, metric: str = "coreplane_test_value") -> list[dict]:
    at = at or now()
    return [
        {
            "metric_type": metric,
            "service_name": "redis",
            "timestamp": (at - timedelta(seconds=i)).isoformat(),
            "value": float(i),
            "tags": {"instance": f"r{i % 3}"},
        }
        for i in range(n)
    ]


def batch(batch_id: str, n: int = 10, **extra) -> dict:
    return {
        "batch_id": batch_id,
        "agent": "test-agent",
        "metrics": points(n),
        "events": [],
        **extra,
    }


def test_a_batch_is_stored_with_counts(api, store):
    body = batch("b-1", 50)
    body["events"] = [
        {"event_type": "health", "service_name": "redis", "timestamp": now().isoformat(),
         "status": "critical", "details": {"msg": "primary unreachable"}, "trace_id": "0" * 31 + "1"}
    ]  # fmt: skip
    response = api.post("/api/v1/ingest", json=body)
    assert response.status_code == 202
    assert response.json() == {"batch_id": "b-1", "duplicate": False, "metrics": 50, "events": 1}
    assert store.count("infrastructure_metrics") == 50
    assert store.count("infrastructure_events") == 1
    event = api.get("/api/v1/events").json()["events"][0]
    assert event["details"]["trace_id"] == "0" * 31 + "1"


def test_the_same_batch_id_twice_stores_nothing_new(api, store):
    body = batch("dup", 20)  # once: a batch built again has new timestamps, so other content
    first = api.post("/api/v1/ingest", json=body)
    second = api.post("/api/v1/ingest", json=body)
    assert first.json()["duplicate"] is False
    assert second.status_code == 202
    assert second.json() == {"batch_id": "dup", "duplicate": True, "metrics": 0, "events": 0}
    assert store.count("infrastructure_metrics") == 20
    assert store.count("metric_rollups_1m") >= 1
    rollup_total = api.get(
        "/api/v1/metrics",
        params={
            "metric_type": "coreplane_test_value",
            "agg": "count",
            "step": 3600,
            "start": (now() - timedelta(hours=2)).isoformat(),
        },
    ).json()
    assert sum(p[1] for s in rollup_total["series"] for p in s["points"]) == 20


def test_gzip_bodies_are_accepted(api, store):
    body = gzip.compress(json.dumps(batch("gz", 30)).encode())
    response = api.post(
        "/api/v1/ingest",
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 202, response.text
    assert store.count("infrastructure_metrics") == 30


def test_one_bad_item_refuses_the_whole_batch_and_the_fixed_batch_then_goes_in(api, store):
    body = batch("atomic", 10)
    body["metrics"][7]["value"] = "not a number"
    refused = api.post("/api/v1/ingest", json=body)
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {
            "kind": "metrics",
            "index": 7,
            "field": "value",
            "reason": "Input should be a valid number",  # a JSON number: strings are not parsed
        }
    ]
    assert store.count("infrastructure_metrics") == 0
    assert store.count("ingest_batches") == 0
    body["metrics"][7]["value"] = 7.0
    assert api.post("/api/v1/ingest", json=body).json()["duplicate"] is False
    assert store.count("infrastructure_metrics") == 10


def _raw(content: bytes, headers: dict | None = None) -> tuple[bytes, dict]:
    return content, {"Content-Type": "application/json", **(headers or {})}


def _json(doc) -> tuple[bytes, dict]:
    return _raw(json.dumps(doc).encode())


def _with(mutate) -> tuple[bytes, dict]:
    body = batch("bad", 3)
    mutate(body)
    return _json(body)


BAD_INPUTS = {
    "malformed JSON": (_raw(b'{"batch_id": "x", "agent": '), 422, "JSON"),
    "not an object": (_json([1, 2, 3]), 422, "object"),
    "missing batch_id": (_with(lambda b: b.pop("batch_id")), 422, "Field required"),
    "wrong type": (_with(lambda b: b["metrics"][0].update(value=[1])), 422, "number"),
    "missing field": (_with(lambda b: b["metrics"][1].pop("timestamp")), 422, "Field required"),
    "NaN": (
        _raw(json.dumps(batch("bad", 2)).replace('"value": 1.0', '"value": NaN').encode()),
        422,
        "finite",
    ),
    "Infinity": (
        _raw(json.dumps(batch("bad", 2)).replace('"value": 1.0', '"value": Infinity').encode()),
        422,
        "finite",
    ),
    "unknown field": (_with(lambda b: b["metrics"][0].update(colour="red")), 422, "Extra inputs"),
    "bad metric name": (
        _with(lambda b: b["metrics"][0].update(metric_type="cpu usage!")),
        422,
        "pattern",
    ),
    "oversized batch": (_json(batch("bad", 60)), 422, "more than the limit of 50"),
    "too many tags": (
        _with(lambda b: b["metrics"][0].update(tags={f"k{i}": "v" for i in range(9)})),
        422,
        "9 tags",
    ),
    "far-future timestamp": (
        _with(lambda b: b["metrics"][0].update(timestamp=(now() + timedelta(days=2)).isoformat())),
        422,
        "in the future",
    ),
    "older than retention": (
        _with(lambda b: b["metrics"][0].update(timestamp=(now() - timedelta(days=45)).isoformat())),
        422,
        "retention",
    ),
    "bad gzip": (_raw(b"this is not gzip", {"Content-Encoding": "gzip"}), 400, "not valid gzip"),
    "unknown encoding": (_raw(b"{}", {"Content-Encoding": "br"}), 415, "not supported"),
    "body too large": (_raw(b"x" * 70_000), 413, "limit"),
    "gzip bomb": (
        _raw(gzip.compress(b" " * 200_000), {"Content-Encoding": "gzip"}),
        413,
        "inflates past",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_4xx_with_a_reason_and_stores_nothing(case, store):
    (content, headers), status, reason = BAD_INPUTS[case]
    settings = make_settings(store, ingest={"max_items": 50, "max_tags": 8, "max_body_bytes": 65_536})
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/api/v1/ingest",
            content=content,
            headers={"Authorization": f"Bearer {ADMIN}", **headers},
        )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert reason in json.dumps(problem), problem
    assert store.count("infrastructure_metrics") == 0
    assert store.count("ingest_batches") == 0


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_a_missing_or_wrong_token_is_refused_and_stores_nothing(store, token):
    with TestClient(create_app(make_settings(store))) as client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = client.post("/api/v1/ingest", json=batch("auth", 5), headers=headers)
    assert response.status_code == 401
    assert "bearer" in response.json()["detail"].lower()
    assert store.count("infrastructure_metrics") == 0


def test_a_registered_agent_ingests_as_itself_only(api, store):
    token = api.post("/api/v1/agents/register", json={"name": "test-agent"}).json()["token"]
    as_agent = {"Authorization": f"Bearer {token}"}
    assert api.post("/api/v1/ingest", json=batch("mine", 5), headers=as_agent).status_code == 202
    other = batch("theirs", 5) | {"agent": "someone-else"}
    assert api.post("/api/v1/ingest", json=other, headers=as_agent).status_code == 403
    assert api.get("/api/v1/metrics", params={"metric_type": "x"}, headers=as_agent).status_code == 403
    assert api.post("/api/v1/agents/register", json={"name": "test-agent"}).status_code == 409
    assert store.count("infrastructure_metrics") == 5


def test_ingest_figures_on_metrics(api):
    def figures() -> dict[str, float]:
        out = {}
        for line in api.get("/metrics").text.splitlines():
            if line.startswith("coreplane_ingest_"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    before = figures()
    body = batch("m-1", 12)
    api.post("/api/v1/ingest", json=body)
    api.post("/api/v1/ingest", json=body)
    api.post("/api/v1/ingest", json={"batch_id": "m-2", "agent": "a", "metrics": [{"bad": 1}]})
    after = figures()

    def moved(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert moved('coreplane_ingest_batches_total{outcome="accepted"}') == 1
    assert moved('coreplane_ingest_batches_total{outcome="duplicate"}') == 1
    assert moved('coreplane_ingest_batches_total{outcome="rejected"}') == 1
    assert moved('coreplane_ingest_rejects_total{reason="invalid"}') == 1
    assert moved('coreplane_ingest_points_total{kind="metric"}') == 12
    assert moved("coreplane_ingest_duplicates_total") == 1
    assert moved("coreplane_ingest_duration_seconds_count") == 2
    assert moved("coreplane_ingest_received_bytes_total") > 0
