"""The anonymous-read policy on the real S3 server: pushed as a bucket policy, it lets anyone
GET objects under its prefixes straight from the server (and nothing else); removing it
closes them again; bad prefixes are refused naming the item, with nothing pushed; only the
bucket's admins may change it."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.store.models import AuditEntry
from tests.support.problems import fields
from tests.support.storage import bucket_name, token

API = "/api/v1/storage"


@pytest.fixture
def anonymous(services):
    with httpx.Client(base_url=f"http://{services.s3.endpoint}", timeout=30) as client:
        yield client


def make_bucket(api: TestClient) -> str:
    name = bucket_name("pol")
    answer = api.post(f"{API}/buckets", json={"name": name})
    assert answer.status_code == 201, answer.text
    for key in ("public/x", "img/y.png", "private/x", "publicity"):
        answer = api.put(f"{API}/{name}/objects/{key}", content=f"bytes of {key}".encode())
        assert answer.is_success, answer.text
    return name


def test_anonymous_read_works_for_its_prefixes_only(api: TestClient, anonymous: httpx.Client) -> None:
    bucket = make_bucket(api)
    assert anonymous.get(f"/{bucket}/public/x").status_code == 403  # nothing is public at first
    assert api.get(f"{API}/buckets/{bucket}/policy").json() == {"anonymous_read": [], "raw": None}

    answer = api.put(
        f"{API}/buckets/{bucket}/policy", json={"anonymous_read": ["public/", "img/", "public/"]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["anonymous_read"] == ["public/", "img/"]
    held = api.get(f"{API}/buckets/{bucket}/policy").json()  # the answer is what the server holds
    assert held["anonymous_read"] == ["public/", "img/"] and held["raw"]["Statement"][0]["Effect"] == "Allow"
    statement = answer.json()["raw"]["Statement"][0]
    assert statement["Effect"] == "Allow" and "s3:GetObject" in str(statement["Action"])

    found = anonymous.get(f"/{bucket}/public/x")
    assert found.status_code == 200 and found.content == b"bytes of public/x"
    assert anonymous.get(f"/{bucket}/img/y.png").status_code == 200
    assert anonymous.get(f"/{bucket}/private/x").status_code == 403
    assert anonymous.get(f"/{bucket}/publicity").status_code == 403  # "public/" is not "public"
    assert anonymous.get(f"/{bucket}").status_code == 403  # reading is not listing
    assert anonymous.put(f"/{bucket}/public/new", content=b"x").status_code == 403

    assert api.delete(f"{API}/buckets/{bucket}/policy").status_code == 204
    assert anonymous.get(f"/{bucket}/public/x").status_code == 403
    assert api.get(f"{API}/buckets/{bucket}/policy").json()["raw"] is None
    assert api.delete(f"{API}/buckets/{bucket}/policy").status_code == 204  # none: still fine

    with Session(api.app.state.engine) as session:  # type: ignore[attr-defined]
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.target == bucket, AuditEntry.action.like("storage.policy%"))
        ).all()
    pushed = next(e for e in entries if e.action == "storage.policy.set")
    assert pushed.details["policy"]["Statement"][0]["Resource"] == [
        f"arn:aws:s3:::{bucket}/public/*",
        f"arn:aws:s3:::{bucket}/img/*",
    ]
    assert sum(e.action == "storage.policy.delete" for e in entries) == 2


def test_an_empty_list_removes_the_policy(api: TestClient, anonymous: httpx.Client) -> None:
    bucket = make_bucket(api)
    assert api.put(f"{API}/buckets/{bucket}/policy", json={"anonymous_read": ["public/"]}).status_code == 200
    assert anonymous.get(f"/{bucket}/public/x").status_code == 200
    answer = api.put(f"{API}/buckets/{bucket}/policy", json={"anonymous_read": []})
    assert answer.status_code == 200 and answer.json() == {"anonymous_read": [], "raw": None}
    assert anonymous.get(f"/{bucket}/public/x").status_code == 403


@pytest.mark.parametrize(
    ("prefixes", "field", "status"),
    [
        (["ok/", ""], "anonymous_read[1]", 422),
        (["../up/"], "anonymous_read[0]", 422),
        (["/abs/"], "anonymous_read[0]", 422),
        (["a/*"], "anonymous_read[0]", 422),
        (["a\\b"], "anonymous_read[0]", 422),
        ([f"p{i}/" for i in range(21)], None, 413),
    ],
)
def test_bad_prefixes_are_refused_and_nothing_is_pushed(
    api: TestClient, anonymous: httpx.Client, prefixes: list[str], field: str | None, status: int
) -> None:
    bucket = make_bucket(api)
    answer = api.put(f"{API}/buckets/{bucket}/policy", json={"anonymous_read": prefixes})
    assert answer.status_code == status, answer.text
    if field:
        assert fields(answer) == [field]
    assert api.get(f"{API}/buckets/{bucket}/policy").json()["raw"] is None


def test_only_the_buckets_admins_change_the_policy(api: TestClient, anonymous: httpx.Client) -> None:
    bucket = make_bucket(api)
    viewer = token(api, "viewer", "pol-viewer")
    writer = token(api, "operator", "pol-writer")
    grant = {"subject": "user:pol-writer", "level": "write"}
    assert api.put(f"{API}/buckets/{bucket}/grants", json=grant).is_success
    for who in (viewer, writer):
        body = {"anonymous_read": ["private/"]}
        assert api.put(f"{API}/buckets/{bucket}/policy", json=body, headers=who).status_code == 403
        assert api.delete(f"{API}/buckets/{bucket}/policy", headers=who).status_code == 403
    assert api.get(f"{API}/buckets/{bucket}/policy", headers=viewer).status_code == 403
    assert api.get(f"{API}/buckets/{bucket}/policy", headers=writer).status_code == 200
    assert anonymous.get(f"/{bucket}/private/x").status_code == 403


def test_setting_the_policy_answers_what_it_pushed_without_reading_it_back(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = make_bucket(api)
    client = api.app.state.storage.client  # type: ignore[attr-defined]
    reads: list[str] = []
    real = client.get_bucket_policy
    monkeypatch.setattr(client, "get_bucket_policy", lambda name: reads.append(name) or real(name))
    answer = api.put(f"{API}/buckets/{bucket}/policy", json={"anonymous_read": ["docs/"]})
    assert answer.status_code == 200 and answer.json()["anonymous_read"] == ["docs/"], answer.text
    assert reads == []
    answer = api.put(f"{API}/buckets/{bucket}/policy", json={"anonymous_read": []})
    assert answer.json() == {"anonymous_read": [], "raw": None}
    assert reads == [bucket]  # the one read that decides: is there a policy to delete
