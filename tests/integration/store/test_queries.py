"""GET /api/v1/metrics through the API on both dialects."""

from datetime import UTC, datetime, timedelta

# On the hour, so that buckets of any step up to an hour start at T.
T = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)


def _ingest(api) -> None:
    metrics = [
        {
            "metric_type": "coreplane_q_value",
            "service_name": service,
            "timestamp": (T + timedelta(seconds=10 * i)).isoformat(),
            "value": float(i),
            "tags": {"instance": instance},
        }
        for service, instance in (("redis", "a"), ("redis", "b"), ("memcached", "a"))
        for i in range(12)  # two minutes of points every 10 s
    ]
    assert (
        api.post("/api/v1/ingest", json={"batch_id": "q", "agent": "a", "metrics": metrics}).status_code
        == 202
    )


def _query(api, **params):
    base = {
        "metric_type": "coreplane_q_value",
        "start": T.isoformat(),
        "end": (T + timedelta(minutes=2)).isoformat(),
    }
    return api.get("/api/v1/metrics", params=base | params)


def test_tag_filter_group_by_and_source_choice(api):
    _ingest(api)
    body = _query(api, step=60, agg="sum", tags="instance=a").json()
    assert body["source"] == "1m"
    by_service = {s["labels"]["service_name"]: [p[1] for p in s["points"]] for s in body["series"]}
    # Minute 1 holds i = 0..5 (sum 15), minute 2 holds i = 6..11 (sum 51).
    assert by_service == {"memcached": [15.0, 51.0], "redis": [15.0, 51.0]}
    grouped = _query(api, step=120, agg="count", service_name="redis", group_by="instance").json()
    assert {s["labels"]["instance"]: s["points"][0][1] for s in grouped["series"]} == {
        "a": 12.0,
        "b": 12.0,
    }
    fine = _query(api, step=30, agg="max", service_name="memcached").json()
    assert fine["source"] == "raw"
    assert [p[1] for p in fine["series"][0]["points"]] == [2.0, 5.0, 8.0, 11.0]
    assert _query(api, step=60, agg="p95").json()["source"] == "raw"


def test_bad_queries_are_422_with_a_reason(api):
    too_many = _query(api, step=1, start=(T - timedelta(days=1)).isoformat())
    assert too_many.status_code == 422
    assert "raise step" in too_many.json()["detail"]
    backwards = _query(api, start=(T + timedelta(hours=1)).isoformat())
    assert backwards.status_code == 422
    bad_tag = _query(api, tags="no-equals-sign")
    assert bad_tag.status_code == 422
    assert "key=value" in bad_tag.json()["detail"]
    p95_rollup = _query(api, agg="p95", source="1m", step=60)
    assert p95_rollup.status_code == 422


def test_combined_computes_one_series_across_services_in_the_database(api, store):
    from controlplane.store.queries import SeriesQuery, combined

    _ingest(api)
    query = SeriesQuery("coreplane_q_value", start=T, end=T + timedelta(minutes=2), step_s=60, agg="max")
    with store.sessions() as session:
        naive = query.start.replace(tzinfo=None), query.end.replace(tzinfo=None)
        query.start, query.end = naive
        # per service the max of each minute is 5 then 11 (redis's two instances share it)
        for combine, expected in (("sum", [10.0, 22.0]), ("max", [5.0, 11.0]), ("avg", [5.0, 11.0])):
            rows = combined(session, query, "1m", combine)
            assert [v for _, v in rows] == expected, combine
            assert [b for b, _ in rows] == [naive[0], naive[0] + timedelta(minutes=1)]
        query.agg = "avg"  # redis averages both instances: (0..5) -> 2.5, memcached the same
        assert [v for _, v in combined(session, query, "raw", "sum")] == [5.0, 17.0]
