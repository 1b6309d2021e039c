"""Odd input on both dialects (issue 12, findings 7, 12-16): every case gets a 4xx
problem+json naming what to fix, never a 500, and nothing half-stored. PostgreSQL is
where varchar lengths and NUL bytes used to fail in the store."""

import gzip
import json
import math
from datetime import UTC, datetime, timedelta

import pytest

PROBLEM = "application/problem+json"
OVERFLOWING = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"]


def now() -> datetime:
    return datetime.now(UTC)


def point(value: object = 1.0, *, at: datetime | None = None, **extra) -> dict:
    return {"metric_type": "coreplane_odd_value", "service_name": "odd", "timestamp": (at or now()).isoformat(),
            "value": value, "tags": {"instance": "i1"}, **extra}  # fmt: skip


def health(**details) -> dict:
    return {"event_type": "health", "service_name": "odd", "timestamp": now().isoformat(),
            "status": "critical", "details": {"instance": "10.0.0.1:6379", "type": "redis", **details}}  # fmt: skip


def ingest(api, batch_id: str, *, metrics=(), events=()):  # type: ignore[no-untyped-def]
    body = {"batch_id": batch_id, "agent": "odd-agent", "metrics": list(metrics), "events": list(events)}
    return api.post("/api/v1/ingest", json=body)


def refused(response, status: int = 422) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    return response.json()


def fields(problem: dict) -> set[str]:
    return {e.get("field") for e in problem.get("errors") or []}


# Finding 7: timestamps whose UTC time falls outside years 1..9999.


@pytest.mark.parametrize("timestamp", OVERFLOWING)
def test_an_ingest_timestamp_that_overflows_utc_gets_422(api, store, timestamp):
    metric = refused(ingest(api, "ts-m", metrics=[point(timestamp=timestamp)]))
    assert "metrics" in {e["kind"] for e in metric["errors"]}
    assert "outside years 1 to 9999" in json.dumps(metric)
    event = health()
    event["timestamp"] = timestamp
    refused(ingest(api, "ts-e", events=[event]))
    assert store.count("infrastructure_metrics") == store.count("infrastructure_events") == 0


@pytest.mark.parametrize("timestamp", OVERFLOWING)
@pytest.mark.parametrize(
    ("path", "name"),
    [("/api/v1/metrics?metric_type=m", "start"), ("/api/v1/metrics?metric_type=m", "end"),
     ("/api/v1/events?", "since"), ("/api/v1/events?", "until")],
)  # fmt: skip
def test_a_query_time_that_overflows_utc_gets_422(api, path, name, timestamp):
    problem = refused(api.get(path, params={name: timestamp}))
    assert any(name in (f or "") for f in fields(problem)), problem


# Finding 7 and 16: health events feed the catalog's columns.


@pytest.mark.parametrize(
    ("details", "field"),
    [({"role": {"is": "primary"}}, "details.role"), ({"message": ["down", "hard"]}, "details.message"),
     ({"type": "t" * 31}, "details.type"), ({"instance": "h" * 256}, "details.instance"),
     ({"role": "r" * 31}, "details.role")],
)  # fmt: skip
def test_health_event_details_the_catalog_cannot_store_get_422_naming_the_field(api, store, details, field):
    problem = refused(ingest(api, "health-odd", events=[health(**details)]))
    assert field in fields(problem), problem
    assert store.count("infrastructure_events") == store.count("catalog_instances") == 0


def test_a_well_formed_health_event_still_reaches_the_catalog(api, store):
    assert ingest(api, "health-ok", events=[health(role="primary", message="gone")]).status_code == 202
    assert store.count("catalog_instances") == 1


# Finding 12: strict metric values, capped lists, validated action params.


@pytest.mark.parametrize("value", ["1.5", True, "NaN", None])
def test_a_metric_value_must_be_a_json_number(api, store, value):
    problem = refused(ingest(api, "strict", metrics=[point(value)]))
    assert "value" in fields(problem), problem
    assert store.count("infrastructure_metrics") == 0


def test_an_integer_metric_value_is_still_a_number(api, store):
    assert ingest(api, "int", metrics=[point(3)]).status_code == 202
    assert store.count("infrastructure_metrics") == 1


def test_tag_filters_are_capped(api):
    many = [f"k{i}=v" for i in range(21)]
    problem = refused(api.get("/api/v1/metrics", params={"metric_type": "m", "tags": many}))
    assert "tags" in fields(problem) and "more than 20" in problem["detail"]
    assert api.get("/api/v1/metrics", params={"metric_type": "m", "tags": many[:20]}).status_code == 200


def test_service_registration_caps_an_instances_tags(api):
    item = {"service": "odd", "kind": "redis", "address": "h:1", "tags": {f"k{i}": "v" for i in range(65)}}
    refused(api.post("/api/v1/services/register", json=[item]))


@pytest.mark.parametrize(
    ("params", "field"),
    [({"op": "grow", "n": 1e30}, "params.n"), ({"op": "grow", "n": -5}, "params.n"),
     ({"op": "grow", "n": "3"}, "params.n"), ({"op": "grow", "n": True}, "params.n"),
     ({"op": "grow", "n": 1, "min": 5, "max": 2}, "params.min"), ({"op": "explode"}, "params.op")],
)  # fmt: skip
def test_scale_params_are_validated_naming_the_param(api, store, params, field):
    problem = refused(
        api.post("/api/v1/actions", json={"kind": "scale", "target": "tasks", "params": params})
    )
    assert field in fields(problem), problem
    assert store.count("actions") == 0


def test_cache_invalidate_lists_are_capped(api, store):
    params = {"tags": [f"t{i}" for i in range(1001)]}
    problem = refused(
        api.post("/api/v1/actions", json={"kind": "cache.invalidate", "target": "c", "params": params})
    )
    assert "params.tags" in fields(problem)


# Finding 13: one gzip member, nothing after it.


@pytest.mark.parametrize("tail", ["member", "junk"])
def test_gzip_with_anything_after_its_first_member_gets_400(api, store, tail):
    body = json.dumps({"batch_id": "gz", "agent": "odd-agent", "metrics": [point()], "events": []}).encode()
    extra = gzip.compress(json.dumps({"more": 1}).encode()) if tail == "member" else b"trailing junk"
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    problem = refused(api.post("/api/v1/ingest", content=gzip.compress(body) + extra, headers=headers), 400)
    assert "one gzip member" in problem["detail"]
    assert store.count("infrastructure_metrics") == 0
    assert api.post("/api/v1/ingest", content=gzip.compress(body), headers=headers).status_code == 202


# Finding 14: q is literal text, not a LIKE pattern.


def test_q_with_percent_or_underscore_matches_them_literally(api):
    texts = ["disk 50% full", "500 errors", "key a_b gone", "key axb gone"]
    events = [
        {**health(), "event_type": "note", "status": "passing", "details": {"message": t}} for t in texts
    ]
    assert ingest(api, "like", events=events).status_code == 202

    def found(q: str) -> list[str]:
        answer = api.get("/api/v1/events", params={"q": q})
        assert answer.status_code == 200, answer.text
        return sorted(e["details"]["message"] for e in answer.json()["events"])

    assert found("50%") == ["disk 50% full"]
    assert found("a_b") == ["key a_b gone"]


# Finding 15: averages of values near the largest double.


def test_averages_near_the_largest_double_stay_finite_on_raw_points_and_roll_ups(api):
    at = now().replace(second=10, microsecond=0) - timedelta(minutes=5)
    big = 1.7e308
    # Two batches into the same minute: the second adds to the roll-up row the first wrote.
    assert ingest(api, "big-1", metrics=[point(big, at=at)]).status_code == 202
    assert ingest(api, "big-2", metrics=[point(big, at=at + timedelta(seconds=1))]).status_code == 202
    # And one point in each of two other minutes: finite roll-up sums whose total is not.
    assert ingest(api, "big-3", metrics=[point(big, at=at + timedelta(minutes=1))]).status_code == 202
    assert ingest(api, "big-4", metrics=[point(big, at=at + timedelta(minutes=2))]).status_code == 202
    window = {"metric_type": "coreplane_odd_value", "start": (at - timedelta(hours=1)).isoformat(),
              "end": (at + timedelta(hours=1)).isoformat(), "step": 7200}  # fmt: skip
    for source in ("raw", "1m", "1h"):
        answer = api.get("/api/v1/metrics", params={**window, "source": source, "agg": "avg"})
        assert answer.status_code == 200, (source, answer.text)
        values = [v for s in answer.json()["series"] for _, v in s["points"] if v is not None]
        assert values == [big], (source, answer.json())
    minute = {**window, "step": 60, "source": "1m", "agg": "avg"}
    values = [v for s in api.get("/api/v1/metrics", params=minute).json()["series"] for _, v in s["points"]]
    assert [v for v in values if v is not None] == [big, big, big]
    # A sum that does not fit a double is null, not an error.
    total = api.get("/api/v1/metrics", params={**window, "source": "raw", "agg": "sum"})
    assert total.status_code == 200, total.text
    assert all(v is None or math.isfinite(v) for s in total.json()["series"] for _, v in s["points"])


# Finding 16: NUL bytes and lengths wherever service names and health fields enter.


@pytest.mark.parametrize(
    ("change", "field"),
    [({"hostname": "h\x00st"}, "hostname"), ({"version": "1\x00"}, "version"),
     ({"agent": "a\x00b"}, "agent"), ({"hostname": "h" * 256}, "hostname")],
)  # fmt: skip
def test_heartbeat_fields_with_nul_or_too_long_get_422(api, change, field):
    body = {"agent": "odd-agent", "version": "1", "hostname": "h", "uptime_s": 1, **change}
    problem = refused(api.post("/api/v1/agents/heartbeat", json=body))
    assert any(field in (f or "") for f in fields(problem)), problem


@pytest.mark.parametrize(
    ("change", "field"),
    [({"address": "h\x00:1"}, "address"), ({"kind": "re\x00dis"}, "kind"), ({"role": "pri\x00"}, "role"),
     ({"message": "down\x00"}, "message"), ({"tags": {"k": "v\x00"}}, "tags"), ({"kind": "k" * 31}, "kind"),
     ({"service": "s" * 51}, "service")],
)  # fmt: skip
def test_instance_fields_with_nul_or_too_long_get_422(api, store, change, field):
    item = {"service": "odd", "kind": "redis", "address": "h:1", **change}
    problem = refused(api.post("/api/v1/services/register", json=[item]))
    assert any(field in (f or "") for f in fields(problem)), problem
    heartbeat = {"agent": "odd-agent", "version": "1", "hostname": "h", "uptime_s": 1, "targets": [item]}
    problem = refused(api.post("/api/v1/agents/heartbeat", json=heartbeat))
    assert any(field in (f or "") for f in fields(problem)), problem
    assert store.count("catalog_instances") == 0


@pytest.mark.parametrize("details", [{"role": "pri\x00mary"}, {"instance": "h\x00:1"}, {"note": "x\x00"}])
def test_health_event_nul_bytes_get_422(api, store, details):
    problem = refused(ingest(api, "nul", events=[health(**details)]))
    assert any((f or "").startswith("details") for f in fields(problem)), problem
    assert store.count("infrastructure_events") == 0


def test_action_text_with_nul_gets_422(api, store):
    body = {"kind": "failover", "target": "re\x00dis", "params": {}}
    assert any("target" in (f or "") for f in fields(refused(api.post("/api/v1/actions", json=body))))
    body = {"kind": "failover", "target": "redis", "params": {"failed_instance": "h\x00"}}
    refused(api.post("/api/v1/actions", json=body))
    assert store.count("actions") == 0


# Finding 7: settings documents nested too deep.


def test_a_settings_value_nested_too_deep_gets_a_4xx(api, store):
    deep = {"a": json.loads("[" * 40 + "]" * 40)}
    problem = refused(api.put("/api/v1/settings/odd", json={"value": deep, "version": 0}))
    assert "deeper than" in problem["detail"]
    very_deep = '{"value": {"a": ' + "[" * 3000 + "]" * 3000 + '}, "version": 0}'
    answer = api.put("/api/v1/settings/odd", content=very_deep, headers={"Content-Type": "application/json"})
    assert 400 <= answer.status_code < 500 and answer.headers["content-type"].startswith(PROBLEM), answer.text
    assert store.count("infrastructure_settings") == 0
