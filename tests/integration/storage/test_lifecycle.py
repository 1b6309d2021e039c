"""Lifecycle on the real S3 server: rules set on the server and stored; coreplane's own pass
(the dry-run through the API on today's state, then in process with a later ``now`` to age
the objects) lists and deletes expired current objects and noncurrent versions; bad rules
are refused naming the field with nothing stored; only the bucket's admins configure or run it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from minio.deleteobjects import DeleteError, DeleteObject
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.clock import utcnow
from controlplane.storage import lifecycle, metrics
from controlplane.store.models import AuditEntry, StorageBucket
from tests.support.problems import fields
from tests.support.storage import bucket_name, token

API = "/api/v1/storage"
RULES = [
    {"id": "tmp", "prefix": "tmp/", "expire_days": 1},
    {"id": "history", "prefix": "", "noncurrent_days": 1},
]


def make_bucket(api: TestClient, *, versioning: bool = True) -> str:
    name = bucket_name("life")
    answer = api.post(f"{API}/buckets", json={"name": name, "versioning": versioning})
    assert answer.status_code == 201, answer.text
    return name


def put(api: TestClient, bucket: str, key: str, body: bytes) -> None:
    answer = api.put(f"{API}/{bucket}/objects/{key}", content=body)
    assert answer.is_success, answer.text


def run_at(api: TestClient, bucket: str, now: datetime, *, dry_run: bool) -> dict[str, Any]:
    """coreplane's pass in process, as the leader's round runs it, at ``now``."""
    app = api.app  # type: ignore[attr-defined]
    with Session(app.state.engine) as session, session.begin():
        row = session.get(StorageBucket, bucket)
        assert row is not None
        return lifecycle.run(session, app.state.storage, row, dry_run=dry_run, now=now, actor="test")


def tick_at(api: TestClient, now: datetime) -> dict[str, str]:
    """The leader's lifecycle round in process at ``now``, as its storage loop runs it."""
    app = api.app  # type: ignore[attr-defined]
    with Session(app.state.engine) as session, session.begin():
        return lifecycle.tick(session, app.state.storage, now=now)


def test_rules_are_set_on_the_server_and_stored(api: TestClient) -> None:
    bucket = make_bucket(api)
    answer = api.put(f"{API}/buckets/{bucket}/lifecycle", json={"rules": RULES})
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["on_server"] is True
    assert [r["id"] for r in found["rules"]] == ["tmp", "history"]
    server = {r["id"]: r for r in found["server"]}
    assert server["tmp"]["expire_days"] == 1 and server["tmp"]["prefix"] == "tmp/"
    assert server["history"]["noncurrent_days"] == 1
    with Session(api.app.state.engine) as session:  # type: ignore[attr-defined]
        row = session.get(StorageBucket, bucket)
        assert row is not None and row.lifecycle_on_server and row.lifecycle[0]["id"] == "tmp"

    answer = api.put(f"{API}/buckets/{bucket}/lifecycle", json={"rules": []})
    assert answer.status_code == 200 and answer.json()["rules"] == [] and answer.json()["server"] is None


def test_dry_run_then_apply_expires_current_objects_and_noncurrent_versions(api: TestClient) -> None:
    bucket = make_bucket(api)
    assert api.put(f"{API}/buckets/{bucket}/lifecycle", json={"rules": RULES}).status_code == 200
    put(api, bucket, "tmp/a", b"scratch")
    put(api, bucket, "keep/b", b"one")
    put(api, bucket, "keep/b", b"two")  # "one" is noncurrent from now on

    answer = api.post(f"{API}/buckets/{bucket}/lifecycle/run", json={"dry_run": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["doomed"] == 0 and answer.json()["deleted"] == 0  # all written a moment ago

    later = datetime.now(UTC) + timedelta(days=2)
    preview = run_at(api, bucket, later, dry_run=True)
    went = {(d["key"], d["action"]) for d in preview["items"]}
    assert went == {("tmp/a", "expire"), ("keep/b", "noncurrent")}
    assert preview["deleted"] == 0
    assert api.get(f"{API}/{bucket}/objects/tmp/a").status_code == 200  # a dry run touches nothing

    batches, singles = _calls("remove_objects", bucket), _calls("remove_object", bucket)
    done = run_at(api, bucket, later, dry_run=False)
    assert done["deleted"] == 2 and done["failed"] == []
    assert _calls("remove_objects", bucket) == batches + 1  # both in one DeleteObjects request
    assert _calls("remove_object", bucket) == singles
    assert api.get(f"{API}/{bucket}/objects/tmp/a").status_code == 404
    assert api.get(f"{API}/{bucket}/objects/keep/b").content == b"two"
    history = api.get(f"{API}/{bucket}/versions").json()["versions"]
    b = [v for v in history if v["key"] == "keep/b"]
    assert len(b) == 1 and b[0]["is_latest"]  # the noncurrent "one" is gone for good
    a = [v for v in history if v["key"] == "tmp/a"]
    assert a[0]["is_delete_marker"] and len(a) == 2  # expiry under versioning leaves a marker

    with Session(api.app.state.engine) as session:  # type: ignore[attr-defined]
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.target == bucket)).all()
    assert "storage.lifecycle.run" in actions and "storage.lifecycle.dry_run" in actions


def test_a_delete_the_server_refuses_is_listed_and_what_went_is_audited(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = _expiring_tmp(api, "tmp/a", "tmp/b")
    client = api.app.state.storage.client  # type: ignore[attr-defined]
    real, requests = client.remove_objects, []

    def refusing_b(name: str, doomed: list[DeleteObject]) -> Iterator[DeleteError]:
        requests.append(sorted(d.name for d in doomed))
        yield from real(name, [d for d in doomed if d.name != "tmp/b"])
        yield DeleteError("AccessDenied", "held back by the test", "tmp/b", None)

    monkeypatch.setattr(client, "remove_objects", refusing_b)
    done = run_at(api, bucket, datetime.now(UTC) + timedelta(days=2), dry_run=False)
    assert requests == [["tmp/a", "tmp/b"]]  # one request for both
    b_version = next(item["version_id"] for item in done["items"] if item["key"] == "tmp/b")
    assert done["deleted"] == 1
    assert done["failed"] == [
        {"key": "tmp/b", "version_id": b_version, "error": "AccessDenied: held back by the test"}
    ]
    assert api.get(f"{API}/{bucket}/objects/tmp/a").status_code == 404
    assert api.get(f"{API}/{bucket}/objects/tmp/b").status_code == 200
    assert _audited_runs(api, bucket) == [(1, done["failed"])]


def test_a_server_gone_after_a_batch_went_fails_the_rest_and_audits_what_went(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = _expiring_tmp(api, "tmp/a", "tmp/b", "tmp/c")
    monkeypatch.setattr(lifecycle, "DELETE_BATCH", 1)  # a request per object, to fail the second
    client = api.app.state.storage.client  # type: ignore[attr-defined]
    real, requests = client.remove_objects, []

    def gone_after_one(name: str, doomed: list[DeleteObject]) -> Iterator[DeleteError]:
        requests.append([d.name for d in doomed])
        if len(requests) > 1:
            raise ConnectionResetError("the test dropped it")
        yield from real(name, doomed)

    monkeypatch.setattr(client, "remove_objects", gone_after_one)
    done = run_at(api, bucket, datetime.now(UTC) + timedelta(days=2), dry_run=False)
    assert requests == [["tmp/a"], ["tmp/b"]]  # no third request once the server is gone
    assert done["deleted"] == 1
    assert [f["key"] for f in done["failed"]] == ["tmp/b", "tmp/c"]
    assert all("did not answer" in f["error"] for f in done["failed"])
    assert api.get(f"{API}/{bucket}/objects/tmp/a").status_code == 404
    assert _audited_runs(api, bucket) == [(1, done["failed"])]


def _expiring_tmp(api: TestClient, *keys: str) -> str:
    """A bucket whose tmp/ expires after a day, holding ``keys`` (each key its own body)."""
    bucket = make_bucket(api)
    rules = [{"id": "tmp", "prefix": "tmp/", "expire_days": 1}]
    assert api.put(f"{API}/buckets/{bucket}/lifecycle", json={"rules": rules}).status_code == 200
    for key in keys:
        put(api, bucket, key, key.encode())
    return bucket


def _audited_runs(api: TestClient, bucket: str) -> list[tuple[int, list[dict[str, Any]]]]:
    """(deleted, failed) of each storage.lifecycle.run audit row of ``bucket``."""
    with Session(api.app.state.engine) as session:  # type: ignore[attr-defined]
        rows = session.scalars(
            select(AuditEntry).where(
                AuditEntry.target == bucket, AuditEntry.action == "storage.lifecycle.run"
            )
        ).all()
        return [(row.details["deleted"], row.details["failed"]) for row in rows]


def _calls(op: str, bucket: str) -> float:
    """S3 calls made as ``op`` on ``bucket`` so far (storage.call's request histogram)."""
    labels = {"op": op, "bucket": metrics.bucket_label(bucket)}
    return REGISTRY.get_sample_value("coreplane_storage_request_seconds_count", labels) or 0.0


def test_without_versioning_an_expired_object_is_gone(api: TestClient) -> None:
    bucket = make_bucket(api, versioning=False)
    rules = [{"id": "all", "prefix": "", "expire_days": 3}]
    assert api.put(f"{API}/buckets/{bucket}/lifecycle", json={"rules": rules}).status_code == 200
    put(api, bucket, "x", b"x")
    assert run_at(api, bucket, datetime.now(UTC) + timedelta(days=2), dry_run=False)["deleted"] == 0
    assert run_at(api, bucket, datetime.now(UTC) + timedelta(days=4), dry_run=False)["deleted"] == 1
    assert api.get(f"{API}/{bucket}/versions").json()["versions"] == []


def test_the_leaders_round_runs_the_rules_and_keeps_what_is_young(api: TestClient) -> None:
    bucket = make_bucket(api)
    assert api.put(f"{API}/buckets/{bucket}/lifecycle", json={"rules": RULES}).status_code == 200
    put(api, bucket, "tmp/a", b"scratch")
    put(api, bucket, "keep/b", b"kept")  # no rule expires keep/, and it has no older version
    outcome = api.app.state.storage_loop.run_once()  # type: ignore[attr-defined]
    assert outcome["lifecycle"] == "ok", outcome
    assert api.get(f"{API}/{bucket}/objects/tmp/a").status_code == 200
    assert _audited_runs(api, bucket) == []  # a round with nothing to do leaves no row
    # That round ran the bucket (the loop's usage job lists it too, so no count there): the
    # next round now is not due and lists nothing.
    listings = _calls("list_object_versions", bucket)
    assert bucket not in tick_at(api, utcnow())
    assert _calls("list_object_versions", bucket) == listings

    # Two days on tmp/a is past its rule: the round (due: it last ran two days ago) expires it.
    later = utcnow() + timedelta(days=2)
    assert tick_at(api, later)[bucket] == "ran"
    assert _calls("list_object_versions", bucket) == listings + 1
    assert api.get(f"{API}/{bucket}/objects/tmp/a").status_code == 404
    assert api.get(f"{API}/{bucket}/objects/keep/b").content == b"kept"
    with Session(api.app.state.engine) as session:  # type: ignore[attr-defined]
        ran = select(AuditEntry).where(
            AuditEntry.target == bucket, AuditEntry.action == "storage.lifecycle.run"
        )
        row = session.scalars(ran).one()
        assert row.actor == lifecycle.ACTOR and row.details is not None
        assert row.details["deleted"] == 1 and row.details["items"][0]["key"] == "tmp/a"

    # Right after, the bucket is not due: no listing; once the interval has passed, it is.
    every = api.app.state.storage.settings.lifecycle_interval_s  # type: ignore[attr-defined]
    assert bucket not in tick_at(api, later + timedelta(seconds=every - 1))
    assert _calls("list_object_versions", bucket) == listings + 1
    assert tick_at(api, later + timedelta(seconds=every))[bucket] == "ran"
    assert _calls("list_object_versions", bucket) == listings + 2


@pytest.mark.parametrize(
    ("rules", "field", "status"),
    [
        ([{"id": "a", "prefix": "", "expire_days": 0}], "rules[0].expire_days", 422),
        ([{"id": "a", "prefix": "", "noncurrent_days": 36501}], "rules[0].noncurrent_days", 422),
        ([{"id": "a", "prefix": "x/"}], "rules[0]", 422),
        ([{"id": "a", "expire_days": 1}, {"id": "a", "expire_days": 2}], "rules[1].id", 422),
        ([{"id": "a", "prefix": "../x", "expire_days": 1}], "rules[0].prefix", 422),
        ([{"id": "a", "expire_days": 1, "transition": "glacier"}], "rules[0].transition", 422),
        ([{"id": f"r{i}", "expire_days": 1} for i in range(51)], None, 413),
    ],
)
def test_bad_rules_are_refused_naming_the_field(
    api: TestClient, rules: list[dict], field: str | None, status: int
) -> None:
    bucket = make_bucket(api)
    good = [{"id": "keep", "prefix": "", "expire_days": 9}]
    assert api.put(f"{API}/buckets/{bucket}/lifecycle", json={"rules": good}).status_code == 200
    answer = api.put(f"{API}/buckets/{bucket}/lifecycle", json={"rules": rules})
    assert answer.status_code == status, answer.text
    if field:
        assert fields(answer) == [field]
    held = api.get(f"{API}/buckets/{bucket}/lifecycle").json()
    assert [r["id"] for r in held["rules"]] == ["keep"]  # nothing stored
    assert [r["id"] for r in held["server"]] == ["keep"]  # nothing pushed


def test_only_the_buckets_admins_configure_or_run_it(api: TestClient) -> None:
    bucket = make_bucket(api)
    viewer = token(api, "viewer", "life-viewer")
    writer = token(api, "operator", "life-writer")
    grant = {"subject": "user:life-writer", "level": "write"}
    assert api.put(f"{API}/buckets/{bucket}/grants", json=grant).is_success
    for who in (viewer, writer):
        answer = api.put(f"{API}/buckets/{bucket}/lifecycle", json={"rules": RULES}, headers=who)
        assert answer.status_code == 403
        answer = api.post(f"{API}/buckets/{bucket}/lifecycle/run", json={"dry_run": True}, headers=who)
        assert answer.status_code == 403
    assert api.get(f"{API}/buckets/{bucket}/lifecycle", headers=viewer).status_code == 403
    assert api.get(f"{API}/buckets/{bucket}/lifecycle", headers=writer).json()["rules"] == []
