"""Restore drills on the real S3 server: a mirror restored into a fresh bucket proves every
object byte-equal (SHA-256), with its content type and metadata, and reports RPO and RTO; a
source changed after the mirror ran fails the drill naming the keys; the drill bucket goes
unless kept; only bucket admins drill; bad input names the field. The largest test prints the
mirror's and the restore's MB/s."""

from __future__ import annotations

import io
import os

from fastapi.testclient import TestClient

from controlplane.storage import access
from controlplane.store.models import StorageBucket
from tests.support.problems import fields
from tests.support.storage import managed, mirrored, raw_put, raw_read, session_of, token

MB = 1024 * 1024


def drill(api: TestClient, mirror_id: str, **extra) -> dict:
    answer = api.post("/api/v1/storage/drills", json={"mirror_id": mirror_id, **extra})
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_drill_restores_every_object_byte_equal_and_reports_rpo_and_rto(api, raw):
    source = managed(api, "drsrc")
    bodies = {"a.txt": b"alpha" * 1000, "dir/b.bin": os.urandom(300_000), "c": b""}
    for key, body in bodies.items():
        raw_put(raw, source, key, b"old " + body)  # an older version the drill must not restore
        raw_put(
            raw, source, key, body, content_type="application/x-drill", metadata={"x-amz-meta-k": key[:1]}
        )
    mirror = mirrored(api, source, "drtgt")
    found = drill(api, mirror["id"])
    assert found["state"] == "passed", found
    assert found["mismatches"] == [] and found["error"] is None
    assert (found["objects"], found["bytes"]) == (3, sum(len(b) for b in bodies.values()))
    assert found["rto_s"] > 0 and found["rpo_s"] >= 0 and found["rpo_data_s"] == 0
    assert found["restored_bucket"].startswith(f"{source[:46]}-drill-")
    assert not raw.bucket_exists(found["restored_bucket"])  # not kept: gone
    with session_of(api) as session:
        assert session.get(StorageBucket, found["restored_bucket"]) is None
    assert api.get(f"/api/v1/storage/drills/{found['id']}").json() == found
    assert [d["id"] for d in api.get("/api/v1/storage/drills", params={"bucket": source}).json()] == [
        found["id"]
    ]


def test_a_kept_drill_bucket_holds_the_restored_bytes(api, raw):
    source = managed(api, "drsrc")
    raw_put(raw, source, "k", b"kept bytes", metadata={"x-amz-meta-why": "drill"})
    mirror = mirrored(api, source, "drtgt")
    found = drill(api, mirror["id"], keep=True)
    assert found["state"] == "passed", found
    kept = found["restored_bucket"]
    body, headers = raw_read(raw, kept, "k")
    assert body == b"kept bytes" and headers["x-amz-meta-why"] == "drill"
    # The drill bucket holds the source's metadata, not the mirror's provenance.
    assert not any(h.startswith("x-amz-meta-coreplane") for h in headers)
    with session_of(api) as session:
        assert session.get(StorageBucket, kept) is not None  # managed: the fixture purges it


def test_a_source_changed_after_the_mirror_ran_fails_the_drill_naming_the_keys(api, raw):
    source = managed(api, "drsrc")
    raw_put(raw, source, "same", b"unchanged")
    raw_put(raw, source, "changed", b"before the mirror")
    mirror = mirrored(api, source, "drtgt")
    raw_put(raw, source, "changed", b"after the mirror!")  # same size as before: only the bytes tell
    raw_put(raw, source, "new", b"written since")
    found = drill(api, mirror["id"])
    assert found["state"] == "failed", found
    why = {m["key"]: m["why"] for m in found["mismatches"]}
    assert set(why) == {"changed", "new"}, why
    assert "missing from the restore" in why["new"]
    assert why["changed"] == "SHA-256 differs"
    assert found["rpo_s"] > 0  # the mirror's last good run was before the drill
    # The data's RPO: the drill's start less the oldest change the restore lacked ("changed",
    # written after the mirror's listing, so no older than the mirror's last good run; S3
    # dates to whole seconds).
    assert 0 < found["rpo_data_s"] <= found["rpo_s"] + 1, found
    assert found["objects"] == 2 and "2 object(s) differ" in found["error"]


def test_only_bucket_admins_drill_and_bad_input_names_the_field(api, raw):
    source = managed(api, "drsrc")
    raw_put(raw, source, "x", b"x")
    mirror = mirrored(api, source, "drtgt")
    with session_of(api) as session, session.begin():
        access.grant(session, source, "user:drill-writer", "write", actor="admin")
    writer = token(api, "operator", "drill-writer")
    assert (
        api.post("/api/v1/storage/drills", json={"mirror_id": mirror["id"]}, headers=writer).status_code
        == 403
    )
    assert api.get("/api/v1/storage/drills", params={"bucket": source}, headers=writer).status_code == 403
    assert api.get("/api/v1/storage/drills", headers=writer).json() == []
    bad = api.post("/api/v1/storage/drills", json={"mirror_id": "not-a-uuid"})
    assert bad.status_code == 422 and any("mirror_id" in (f or "") for f in fields(bad)), bad.text
    unknown = api.post("/api/v1/storage/drills", json={"mirror_id": "00000000-0000-0000-0000-000000000000"})
    assert unknown.status_code == 404
    assert api.get("/api/v1/storage/drills").json() == []  # nothing stored


def test_a_larger_mirror_and_drill_report_their_throughput(api, raw):
    # Bounded: 4 objects of 16 MB (64 MB), streamed through coreplane twice (mirror, restore).
    source, size = managed(api, "drbig"), 16 * MB
    chunk = os.urandom(MB)
    for i in range(4):
        raw.put_object(source, f"big/{i}.bin", io.BytesIO(chunk * 16), size, part_size=16 * MB)
    mirror = mirrored(api, source, "drtgt")
    report = mirror["report"]
    assert (report["copied"], report["bytes"]) == (4, 4 * size)
    found = drill(api, mirror["id"])
    assert found["state"] == "passed" and found["bytes"] == 4 * size, found
    mirror_mb_s = 4 * size / MB / max(report["seconds"], 1e-6)
    restore_mb_s = found["bytes"] / MB / found["rto_s"]
    print(
        f"\nmirror {mirror_mb_s:.1f} MB/s, restore {restore_mb_s:.1f} MB/s (64 MB, RTO {found['rto_s']:.2f} s)"
    )
    assert mirror_mb_s > 1 and restore_mb_s > 1  # a floor far below the seed's 10 MB/s, on a shared box
