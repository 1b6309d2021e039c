"""Storage analytics against the real S3 server: the usage round counts what the server holds
(objects put behind coreplane's back included) with the top prefixes, the serve's S3 calls
reach the store by operation after a flush with their errors and latencies, and the API
refuses a bad window and a caller without a grant."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.clock import utcnow
from controlplane.schemas.ingest import MetricPointIn
from controlplane.storage import analytics, metrics
from controlplane.store.models import InfrastructureMetric, StorageBucket
from controlplane.store.writes import upsert_rollups, write_points
from tests.support.problems import fields
from tests.support.storage import bucket_name, raw_client, storage_api, token

# key -> size; the prefixes by bytes: img/ 4,500 (one of them put straight to the server),
# logs/ 5,000, the root 100.
THROUGH_API = {"logs/a.txt": 3000, "logs/2026/b.txt": 2000, "img/x.png": 4000, "root.txt": 100}
BEHIND_OUR_BACK = ("img/raw.bin", 500)


def _put(client, bucket: str, key: str, size: int) -> None:
    answer = client.put(f"/api/v1/storage/{bucket}/objects/{key}", content=b"x" * size,
                        headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert answer.status_code in (200, 201), answer.text


def _seed(client, services) -> str:
    bucket = bucket_name("an")
    made = client.post("/api/v1/storage/buckets", json={"name": bucket, "quota_bytes": 100_000})
    assert made.status_code == 201, made.text
    for key, size in THROUGH_API.items():
        _put(client, bucket, key, size)
    key, size = BEHIND_OUR_BACK
    raw_client(services).put_object(bucket, key, io.BytesIO(b"y" * size), size)
    for _ in range(3):
        assert client.get(f"/api/v1/storage/{bucket}/objects/logs/a.txt").content == b"x" * 3000
    assert client.get(f"/api/v1/storage/{bucket}/objects/no/such/key").status_code == 404
    return bucket


def test_usage_requests_and_prefixes_reach_the_api(services, tmp_path):
    with storage_api(services, tmp_path, loop_interval_s=3600) as client:
        bucket = _seed(client, services)
        loop = client.app.state.storage_loop
        assert loop.run_once()["usage"] == "ok"
        assert loop.flush() == "ok"

        with Session(client.app.state.engine) as session:
            row = session.get(StorageBucket, bucket)
            assert (row.objects, row.used_bytes) == (5, 9600)
            assert row.usage_at is not None and utcnow() - row.usage_at < timedelta(minutes=5)

        detail = client.get(f"/api/v1/storage/analytics/{bucket}", params={"window": "1h"})
        assert detail.status_code == 200, detail.text
        found = detail.json()
        assert (found["objects"], found["bytes"], found["quota_bytes"]) == (5, 9600, 100_000)
        assert found["used_ratio"] == 0.096
        assert found["top_prefixes"] == [
            {"prefix": "logs/", "bytes": 5000}, {"prefix": "img/", "bytes": 4500}, {"prefix": "", "bytes": 100},
        ]  # fmt: skip
        ops = found["ops"]
        assert ops["put_object"]["requests"] == 4 and ops["put_object"]["errors"] == 0
        # Three reads and the missing key: an object GET is one S3 call (no stat first).
        assert ops["get_object"]["requests"] == 4 and ops["get_object"]["errors"] == 1
        assert 0 < ops["get_object"]["p50_s"] <= ops["get_object"]["p95_s"] < 60
        # The missing key: one error, on the call that asked for it.
        (failed,) = [op for op, figures in ops.items() if figures["errors"]]
        assert ops[failed]["errors"] == 1 and ops[failed]["error_ratio"] == 1 / ops[failed]["requests"]
        assert found["errors"] == 1 and found["error_ratio"] == 1 / found["requests"]
        assert found["requests"] == sum(figures["requests"] for figures in ops.values()) >= 11
        assert found["series"]["bytes"][0]["points"][-1][1] == 9600
        rates = {s["labels"]["op"]: s for s in found["series"]["requests_per_s"]}
        assert sum(v for _, v in rates["put_object"]["points"]) * 60 == pytest.approx(4)

        # A second flush with nothing new writes nothing: the deltas are not counted twice.
        assert loop.flush() == "ok"
        again = client.get(f"/api/v1/storage/analytics/{bucket}").json()
        assert again["ops"]["put_object"]["requests"] == 4

        # The gauges the quota alerts read, from the store (the first scrape reads it).
        scraped = client.get("/metrics").text
        assert f'coreplane_storage_bucket_used_bytes{{bucket="{bucket}"}} 9600.0' in scraped
        assert f'coreplane_storage_bucket_quota_bytes{{bucket="{bucket}"}} 100000.0' in scraped
        assert f'coreplane_storage_bucket_objects{{bucket="{bucket}"}} 5.0' in scraped

        overview = client.get("/api/v1/storage/analytics", params={"window": "24h"})
        assert overview.status_code == 200, overview.text
        (mine,) = [b for b in overview.json()["buckets"] if b["bucket"] == bucket]
        assert mine["objects"] == 5 and mine["errors"] == 1 and mine["ops"]["put_object"]["requests"] == 4


def test_a_count_larger_than_a_round_resumes_at_the_next(services, tmp_path):
    with storage_api(services, tmp_path, loop_interval_s=3600) as client:
        bucket = bucket_name("an")
        # Versioned: an unversioned bucket's versions are its objects, counted with no listing.
        made = client.post("/api/v1/storage/buckets", json={"name": bucket, "versioning": True})
        assert made.status_code == 201, made.text
        raw = raw_client(services)
        for i in range(7):
            raw.put_object(bucket, f"p{i % 2}/k{i}", io.BytesIO(b"z" * (10 + i)), 10 + i)
        storage, engine = client.app.state.storage, client.app.state.engine
        analytics.PAGE, page = 3, analytics.PAGE  # three entries a page, budget of 3 a round
        try:
            outcomes = []
            for _ in range(3):
                with Session(engine) as session, session.begin():
                    outcomes.append(analytics.tick(session, storage, budget=3)[bucket])
        finally:
            analytics.PAGE = page
        # 3 + 3 entries, then the last one: counted; no budget left for the 7 versions.
        assert outcomes == ["partial", "partial", "counted"], outcomes
        with Session(engine) as session, session.begin():
            row = session.get(StorageBucket, bucket)
            assert (row.objects, row.used_bytes) == (7, sum(10 + i for i in range(7)))
            # Counted once in full: the next rounds within storage.count_interval_s leave it be.
            assert bucket not in analytics.tick(session, storage)
            written = session.scalars(select(InfrastructureMetric.metric_type)).all()
            assert sorted(written) == [analytics.BYTES, analytics.OBJECTS, *[analytics.PREFIX_BYTES] * 2]


def test_the_api_refuses_a_bad_window_and_a_caller_without_a_grant(services, tmp_path):
    with storage_api(services, tmp_path, loop_interval_s=3600) as client:
        bucket = bucket_name("an")
        assert client.post("/api/v1/storage/buckets", json={"name": bucket}).status_code == 201
        for path in ("/api/v1/storage/analytics", f"/api/v1/storage/analytics/{bucket}"):
            refused = client.get(path, params={"window": "2h"})
            assert refused.status_code == 422 and fields(refused) == ["window"], refused.text

        stranger = token(client, "viewer", "stranger")
        assert client.get(f"/api/v1/storage/analytics/{bucket}", headers=stranger).status_code == 403
        assert client.get("/api/v1/storage/analytics", headers=stranger).json()["buckets"] == []

        granted = client.put(f"/api/v1/storage/buckets/{bucket}/grants",
                             json={"subject": "user:stranger", "level": "read"})  # fmt: skip
        assert granted.status_code in (200, 201), granted.text
        seen = client.get(f"/api/v1/storage/analytics/{bucket}", headers=stranger)
        assert seen.status_code == 200 and seen.json()["bucket"] == bucket
        listed = client.get("/api/v1/storage/analytics", headers=stranger).json()["buckets"]
        assert [b["bucket"] for b in listed] == [bucket]


def test_growth_is_each_buckets_last_count_less_its_first_and_sums_are_storages_own(services, tmp_path):
    now = utcnow()

    def point(metric: str, value: float, minutes_ago: int, bucket: str, service: str = analytics.SERVICE):
        return MetricPointIn(metric_type=metric, service_name=service, timestamp=now - timedelta(minutes=minutes_ago),
                             value=value, tags={"bucket": bucket, "op": "put_object"})  # fmt: skip

    points = [
        point(analytics.BYTES, 100, 50, "grew"), point(analytics.BYTES, 400, 30, "grew"),
        point(analytics.BYTES, 250, 10, "grew"), point(analytics.BYTES, 7, 20, "once"),
        point(analytics.BYTES, 9, 90, "before"),  # outside the hour
        point(analytics.REQUESTS, 3, 5, "grew"),
        point(analytics.REQUESTS, 1000, 5, "grew", service="an-agent"),  # not storage's: left out
    ]  # fmt: skip
    with storage_api(services, tmp_path, loop_interval_s=3600) as client:
        with Session(client.app.state.engine) as session, session.begin():
            write_points(session, points)
            upsert_rollups(session, points)
        since = now - timedelta(hours=1)
        with Session(client.app.state.engine) as session:
            assert analytics.growth(session, since, None) == {"grew": 150, "once": 0}
            assert analytics.growth(session, since, ["once", "before"]) == {"once": 0}
            assert analytics.sums(session, analytics.REQUESTS, since, ["grew"], ("bucket", "op")) == {
                ("grew", "put_object"): 3
            }


def test_a_bucket_never_versioned_is_listed_once_its_versions_being_its_objects(services, tmp_path):
    with storage_api(services, tmp_path, loop_interval_s=3600) as client:
        bucket = bucket_name("an")
        assert client.post("/api/v1/storage/buckets", json={"name": bucket}).status_code == 201
        raw = raw_client(services)
        for i in range(3):
            raw.put_object(bucket, f"k{i}", io.BytesIO(b"v" * 10), 10)
        storage, engine = client.app.state.storage, client.app.state.engine
        listings = metrics.REQUESTS.labels("list_object_versions", metrics.bucket_label(bucket))
        before = listings._sum.get()  # the seconds its calls took: any call adds to them
        with Session(engine) as session, session.begin():
            assert analytics.tick(session, storage)[bucket] == "counted"
        assert listings._sum.get() == before  # no version listing
        with Session(engine) as session:
            found = dict(
                session.execute(
                    select(InfrastructureMetric.metric_type, InfrastructureMetric.value).where(
                        InfrastructureMetric.metric_type.in_([analytics.VERSIONS, analytics.VERSIONS_BYTES])
                    )
                ).all()
            )
        assert found == {analytics.VERSIONS: 3, analytics.VERSIONS_BYTES: 30}
