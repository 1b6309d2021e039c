"""The storage.restore action end to end on the real S3 server: previewed (objects and bytes
to write, which would be overwritten), created through POST /api/v1/actions, carried out by
the in-process app's control loop, audited, and the bytes equal after; a new bucket made for
it; a requester without admin on the bucket fails it; bad params refused naming the field."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from controlplane.storage import access
from controlplane.store.models import AuditEntry, StorageBucket
from tests.support.problems import fields
from tests.support.storage import bucket_name, managed, mirrored, raw_put, raw_read, session_of, token
from tests.support.timing import until


def preview(api: TestClient, mirror_id: str, **body) -> dict:
    answer = api.post(f"/api/v1/storage/mirrors/{mirror_id}/restore/preview", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def carried_out(api: TestClient, action: dict, headers: dict | None = None) -> dict:
    """The action created (POST /api/v1/actions), once the control loop has ended it."""
    made = api.post("/api/v1/actions", json={**action, "reason": "restore test"}, headers=headers)
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "pending"

    def ended() -> dict | None:
        found = api.get(f"/api/v1/actions/{made.json()['id']}").json()
        return found if found["state"] in ("succeeded", "failed", "cancelled") else None

    return until("the restore action to end", ended, timeout_s=60, every_s=0.2)


def test_a_restore_is_previewed_confirmed_and_carried_out_by_the_leader(api, raw):
    source = managed(api, "rssrc")
    originals = {"gone": b"deleted after the mirror", "newer": b"mirrored version", "same": b"untouched"}
    for key, body in originals.items():
        raw_put(raw, source, key, body, content_type="text/x-orig", metadata={"x-amz-meta-origin": key})
    mirror_id = mirrored(api, source, "rstgt")["id"]
    raw.remove_object(source, "gone")
    raw_put(raw, source, "newer", b"written after the mirror, newer")

    careful = preview(api, mirror_id)
    plan = careful["plan"]
    assert (plan["objects"], plan["bytes"], plan["kept"], plan["unchanged"]) == (1, 24, 1, 1)
    assert plan["kept_keys"] == ["newer"] and plan["overwrites"] == 0
    assert careful["action"] == {"kind": "storage.restore", "target": "s3",
                                 "params": {"mirror_id": mirror_id, "prefix": "", "overwrite": False}}  # fmt: skip
    assert any("Write 1 object(s), 24 bytes" in step for step in careful["steps"])

    forceful = preview(api, mirror_id, overwrite=True)
    assert (forceful["plan"]["objects"], forceful["plan"]["overwritten_keys"]) == (2, ["newer"])
    assert raw_read(raw, source, "newer")[0] == b"written after the mirror, newer"  # a preview writes nothing

    done = carried_out(api, forceful["action"])
    assert done["state"] == "succeeded", done
    for key, body in originals.items():
        restored, headers = raw_read(raw, source, key)
        assert restored == body, key
        assert headers["content-type"] == "text/x-orig" and headers["x-amz-meta-origin"] == key
        assert "x-amz-meta-coreplane-source-version" not in headers
    with session_of(api) as session:
        audited = session.scalars(select(AuditEntry).where(AuditEntry.action == "storage.restore")).all()
    assert len(audited) == 1 and audited[0].target == "s3"
    assert preview(api, mirror_id)["plan"]["objects"] == 0  # all back: nothing left to write


def test_a_restore_into_a_new_bucket_makes_it_and_a_prefix_narrows_it(api, raw):
    source = managed(api, "rssrc")
    for key in ("logs/1", "logs/2", "data/1"):
        raw_put(raw, source, key, key.encode() * 10)
    mirror_id = mirrored(api, source, "rstgt")["id"]
    fresh = bucket_name("rsnew")
    shown = preview(api, mirror_id, target_bucket=fresh, prefix="logs/")
    assert shown["plan"]["create_bucket"] and shown["plan"]["objects"] == 2
    done = carried_out(api, shown["action"])
    assert done["state"] == "succeeded", done
    assert sorted(o.object_name for o in raw.list_objects(fresh, recursive=True)) == ["logs/1", "logs/2"]
    assert raw_read(raw, fresh, "logs/2")[0] == b"logs/2" * 10
    assert api.app.state.storage_loop.flush() == "ok"  # the leader's pending usage into the row
    with session_of(api) as session:
        row = session.get(StorageBucket, fresh)
        assert row is not None and row.used_bytes == 2 * len(b"logs/1" * 10)  # counted as uploads


def test_a_requester_without_admin_on_the_bucket_fails_and_bad_params_name_the_field(api, raw):
    source = managed(api, "rssrc")
    raw_put(raw, source, "k", b"original")
    mirror_id = mirrored(api, source, "rstgt")["id"]
    raw.remove_object(source, "k")
    with session_of(api) as session, session.begin():
        access.grant(session, source, "user:rs-writer", "write", actor="admin")
    writer = token(api, "operator", "rs-writer")
    assert (
        api.post(f"/api/v1/storage/mirrors/{mirror_id}/restore/preview", json={}, headers=writer).status_code
        == 403
    )
    params = {"mirror_id": mirror_id}
    refused = carried_out(api, {"kind": "storage.restore", "target": "s3", "params": params}, headers=writer)
    assert refused["state"] == "failed" and "needs admin" in str(refused["result"]), refused
    assert not any(o.object_name == "k" for o in raw.list_objects(source))  # nothing written

    for bad, field in (
        ({"mirror_id": "nope"}, "params.mirror_id"),
        ({"mirror_id": mirror_id, "target_bucket": "Bad_Name"}, "params.target_bucket"),
        ({"mirror_id": mirror_id, "prefix": "/abs"}, "params.prefix"),
        ({"mirror_id": mirror_id, "overwrite": "yes"}, "params.overwrite"),
        ({"mirror_id": mirror_id, "everything": True}, "params.everything"),
    ):
        answer = api.post("/api/v1/actions", json={"kind": "storage.restore", "target": "s3", "params": bad})
        assert answer.status_code == 422, answer.text
        assert field in fields(answer), (field, answer.json())
    assert api.get("/api/v1/actions", params={"kind": "storage.restore"}).json()[0]["id"] == refused["id"]
