"""The Storage pages against a real `coreplane serve` and the real S3 server (SeaweedFS):
each role sees what its grants allow; the console's forms create a bucket, upload, download
(the same bytes, as an attachment), delete, restore a version, undelete, share and revoke;
a form without its CSRF token is refused; bad input is a 4xx naming the field and stores
nothing; a user without a grant gets 403 on the bucket's pages and on every form, and the
server shows nothing changed (read straight from it with the raw minio client)."""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Iterator
from weakref import WeakKeyDictionary

import httpx
import pytest
from minio import Minio

from tests.support.console import console_users, csrf_of, page_with
from tests.support.serve import private_serve, serving
from tests.support.storage import bucket_name, purge, raw_client


@pytest.fixture(scope="module")
def console(services, tmp_path_factory) -> Iterator[tuple[str, dict[str, httpx.Client], Minio, list[str]]]:
    """(URL, clients by name, the raw S3 client, buckets to purge): one serve for the module,
    users olga and otto (operators) and vera (viewer) beside the admin."""
    raw = raw_client(services)
    made: list[str] = []
    # A 1 s storage round: each serve's S3 call figures reach the store (the activity) quickly.
    serve = private_serve(tmp_path_factory.mktemp("storage-console"), storage__loop_interval_s="1")
    with serve as (url, token, _log):
        clients = console_users(url, token, olga="operator", otto="operator", vera="viewer")
        try:
            yield url, clients, raw, made
        finally:
            for client in clients.values():
                client.close()
            for name in made:
                purge(raw, name)


_TOKENS: WeakKeyDictionary[httpx.Client, str] = WeakKeyDictionary()


def _csrf(client: httpx.Client) -> str:
    """The client's CSRF token: its session's, fixed for the session (console/session.py), so
    read from one page per client rather than a page per form."""
    if client not in _TOKENS:
        _TOKENS[client] = csrf_of(client.get("/storage").text)
    return _TOKENS[client]


def _create(client: httpx.Client, made: list[str], versioning: bool = False, **extra: str) -> str:
    name = bucket_name("con")
    made.append(name)
    form = {"csrf": _csrf(client), "name": name, "quota_gb": "", **extra}
    if versioning:
        form["versioning"] = "on"
    answer = client.post("/storage", data=form)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/storage/{name}"
    return name


def _upload(
    client: httpx.Client, bucket: str, filename: str, body: bytes, prefix: str = ""
) -> httpx.Response:
    data = {"csrf": _csrf(client), "prefix": prefix}
    return client.post(f"/storage/{bucket}/upload", data=data, files={"file": (filename, body, "text/plain")})


def _object_page(client: httpx.Client, bucket: str, key: str) -> str:
    page = client.get(f"/storage/{bucket}/object", params={"key": key})
    assert page.status_code == 200, page.text[:500]
    return page.text


def _raw_bytes(raw: Minio, bucket: str, key: str, version_id: str | None = None) -> bytes:
    answer = raw.get_object(bucket, key, version_id=version_id)
    try:
        return answer.read()
    finally:
        answer.close()
        answer.release_conn()


def _versions(raw: Minio, bucket: str, key: str) -> list[tuple[str | None, bool]]:
    """(version id, is a delete marker) of every version of ``key`` on the server."""
    listed = raw.list_objects(bucket, prefix=key, include_version=True)
    return [(o.version_id, bool(o.is_delete_marker)) for o in listed if o.object_name == key]


def test_each_role_sees_what_its_grants_allow(console):
    url, clients, raw, made = console
    olga, vera, admin = clients["olga"], clients["vera"], clients["admin"]
    assert httpx.get(f"{url}/storage").headers.get("location") == "/login"

    page = vera.get("/storage")
    assert page.status_code == 200 and 'id="storage-create"' not in page.text, "a viewer gets no create form"
    assert '<a href="/storage">Storage</a>' in page.text, "the nav links the page"
    name = bucket_name("con")
    refused = vera.post("/storage", data={"csrf": _csrf(vera), "name": name})
    assert refused.status_code == 403 and not raw.bucket_exists(name)

    bucket = _create(olga, made, versioning=True, encryption="on")
    assert raw.bucket_exists(bucket)
    assert raw.get_bucket_versioning(bucket).status == "Enabled"
    assert raw.get_bucket_encryption(bucket).rule.sse_algorithm == "AES256"
    mine = olga.get(f"/storage/{bucket}").text
    assert '<tr data-subject="user:olga">' in mine and 'id="storage-upload"' in mine
    assert '<dd data-figure="versioning">Enabled</dd>' in mine
    assert '<dd data-figure="encryption">SSE-S3</dd>' in mine
    assert f'data-bucket="{bucket}"' in olga.get("/storage").text
    assert f'data-bucket="{bucket}"' in admin.get("/storage").text, "admins see every bucket"
    assert f'data-bucket="{bucket}"' not in vera.get("/storage").text, "no grant: not listed"
    assert vera.get(f"/storage/{bucket}").status_code == 403

    granted = olga.post(f"/storage/{bucket}/settings",
                        data={"csrf": _csrf(olga), "op": "grant", "subject": "user:vera", "level": "read"})  # fmt: skip
    assert granted.status_code == 303, granted.text
    seen = vera.get(f"/storage/{bucket}")
    assert seen.status_code == 200 and f'data-bucket="{bucket}"' in vera.get("/storage").text
    assert 'id="storage-upload"' not in seen.text and 'id="storage-grant"' not in seen.text
    assert _upload(vera, bucket, "x.txt", b"x").status_code == 403, "read is not write"
    assert list(raw.list_objects(bucket, recursive=True)) == []


def _calls(url: str, bucket: str, op: str) -> float:
    """How many ``op`` calls on ``bucket`` the serve made to the S3 server (its /metrics)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    counts = re.findall(r"^coreplane_storage_request_seconds_count\{(.*)\} (\S+)$", text, re.M)
    wanted = {"op": op, "bucket": bucket}
    return sum(float(n) for labels, n in counts if dict(re.findall(r'(\w+)="([^"]*)"', labels)) == wanted)


def test_the_bucket_list_asks_the_server_nothing_and_the_bucket_page_does(console):
    url, clients, _raw, made = console
    olga = clients["olga"]
    bucket = _create(olga, made)
    # What buckets.summary asks and the serve's own rounds never do (its usage round asks a
    # new bucket's versioning at any moment, so counting that op would race with it).
    asked = ("get_bucket_encryption", "get_bucket_tags")
    before = [_calls(url, bucket, op) for op in asked]
    page = olga.get("/storage").text
    assert f'<tr data-bucket="{bucket}">' in page
    assert [_calls(url, bucket, op) for op in asked] == before, "the list reads the store's rows only"
    assert 'data-figure="versioning"' not in page, "versioning is on the bucket's page"
    assert olga.get(f"/storage/{bucket}").status_code == 200
    after = [_calls(url, bucket, op) for op in asked]
    assert all(a == b + 1 for a, b in zip(after, before, strict=True)), (before, after)


def test_a_form_without_its_csrf_token_is_refused(console):
    _url, clients, raw, made = console
    olga = clients["olga"]
    name = bucket_name("con")
    answer = olga.post("/storage", data={"name": name})
    assert answer.status_code == 403 and "CSRF" in answer.text
    assert not raw.bucket_exists(name)
    bucket = _create(olga, made)
    upload = olga.post(f"/storage/{bucket}/upload", data={"prefix": ""}, files={"file": ("a.txt", b"a")})
    assert upload.status_code == 403 and "CSRF" in upload.text
    assert list(raw.list_objects(bucket, recursive=True)) == []


def test_bad_input_is_a_4xx_naming_what_to_fix_and_stores_nothing(console):
    _url, clients, raw, made = console
    olga = clients["olga"]
    bad = olga.post("/storage", data={"csrf": _csrf(olga), "name": "Bad_Name"})
    assert bad.status_code == 422 and "bucket name" in bad.text and 'data-status="422"' in bad.text
    bucket = _create(olga, made)
    for prefix, words in (("../up/", "segment"), ("/abs/", "absolute"), ("a\\b/", "backslash")):
        answer = _upload(olga, bucket, "f.txt", b"data", prefix=prefix)
        assert answer.status_code == 422, (prefix, answer.status_code)
        assert words in answer.text, (prefix, answer.text[:400])
    long_name = "k" * 1030 + ".txt"
    assert _upload(olga, bucket, long_name, b"data").status_code == 422
    quota = olga.post(
        f"/storage/{bucket}/settings", data={"csrf": _csrf(olga), "op": "quota", "quota_gb": "lots"}
    )
    assert quota.status_code == 422 and "quota_gb" in quota.text
    for gb, status in (("0", 422), ("104857601", 422), ("2000000", 303)):  # buckets' bounds: up to 100 PiB
        answer = olga.post(
            f"/storage/{bucket}/settings", data={"csrf": _csrf(olga), "op": "quota", "quota_gb": gb}
        )
        assert answer.status_code == status, (gb, answer.text[:400])
        assert status == 303 or "quota_gb must be over 0 and at most 104857600 GiB" in answer.text
    assert list(raw.list_objects(bucket, recursive=True)) == []


def test_an_upload_past_the_quota_is_refused_before_its_body_is_read(console):
    _url, clients, raw, made = console
    olga = clients["olga"]
    bucket = _create(olga, made, quota_gb="0.001")  # 1 MiB
    answer = _upload(olga, bucket, "big.bin", secrets.token_bytes(3 * 1024 * 1024))
    assert answer.status_code == 413, answer.text[:400]
    # The page's own check on the declared length (the library's would name Content-Length).
    assert "with its form" in answer.text and "quota" in answer.text, answer.text[:1000]
    assert list(raw.list_objects(bucket, recursive=True)) == []


def test_upload_download_delete_restore_and_undelete_through_the_forms(console):
    _url, clients, raw, made = console
    olga = clients["olga"]
    bucket = _create(olga, made, versioning=True)
    first, second = secrets.token_bytes(300_000), b"second version\n"

    done = _upload(olga, bucket, "report.bin", first, prefix="docs/")
    assert done.status_code == 303, done.text[:500]
    assert _raw_bytes(raw, bucket, "docs/report.bin") == first
    top = olga.get(f"/storage/{bucket}").text
    assert '<tr data-prefix="docs/">' in top, "the folder, not its objects, at the top"
    listed = olga.get(f"/storage/{bucket}", params={"prefix": "docs/"}).text
    row = re.search(r'<tr data-key="docs/report.bin">(.*?)</tr>', listed, re.S)
    assert row, listed[:2000]
    assert 'data-encryption="none"' in row.group(1), "no default encryption asked for"
    assert f'<a href="/storage/{bucket}?prefix=docs/">docs</a>' in listed, "the breadcrumb"

    got = olga.get(f"/storage/{bucket}/download", params={"key": "docs/report.bin"})
    assert got.status_code == 200 and got.content == first
    assert got.headers["content-disposition"].startswith('attachment; filename="report.bin"')
    assert got.headers["content-type"] == "application/octet-stream"

    assert _upload(olga, bucket, "report.bin", second, prefix="docs/").status_code == 303
    assert _raw_bytes(raw, bucket, "docs/report.bin") == second
    history = _versions(raw, bucket, "docs/report.bin")
    assert len(history) == 2
    page = _object_page(olga, bucket, "docs/report.bin")
    older = [v for v, _ in history if f'<tr data-version="{v}">' in page]
    assert len(older) == 1, "the older version (not the latest) is listed with a restore button"
    assert "Versioning is on: the delete adds a marker" in page, "the delete form knows versioning is on"
    restored = olga.post(f"/storage/{bucket}/restore",
                         data={"csrf": _csrf(olga), "key": "docs/report.bin", "version_id": older[0]})  # fmt: skip
    assert restored.status_code == 303, restored.text[:500]
    assert _raw_bytes(raw, bucket, "docs/report.bin") == first

    unconfirmed = olga.post(f"/storage/{bucket}/delete", data={"csrf": _csrf(olga), "key": "docs/report.bin"})
    assert unconfirmed.status_code == 422 and "confirm" in unconfirmed.text
    assert _raw_bytes(raw, bucket, "docs/report.bin") == first
    deleted = olga.post(f"/storage/{bucket}/delete",
                        data={"csrf": _csrf(olga), "key": "docs/report.bin", "confirm": "yes"})  # fmt: skip
    assert deleted.status_code == 303, deleted.text[:500]
    assert any(marker for _, marker in _versions(raw, bucket, "docs/report.bin")), "a delete marker"
    assert list(raw.list_objects(bucket, prefix="docs/", recursive=True)) == [], "hidden by the marker"
    page = _object_page(olga, bucket, "docs/report.bin")
    assert 'id="storage-deleted"' in page and 'id="storage-undelete"' in page
    undone = olga.post(f"/storage/{bucket}/restore",
                       data={"csrf": _csrf(olga), "key": "docs/report.bin", "op": "undelete"})  # fmt: skip
    assert undone.status_code == 303, undone.text[:500]
    assert _raw_bytes(raw, bucket, "docs/report.bin") == first


def test_a_key_beyond_ascii_uploads_and_downloads_with_its_name(console):
    _url, clients, raw, made = console
    olga = clients["olga"]
    bucket = _create(olga, made)
    body = "こんにちは\n".encode()
    assert _upload(olga, bucket, "語.txt", body, prefix="日本/").status_code == 303
    assert _raw_bytes(raw, bucket, "日本/語.txt") == body
    listed = olga.get(f"/storage/{bucket}", params={"prefix": "日本/"}).text
    assert '<tr data-key="日本/語.txt">' in listed, listed[:2000]
    got = olga.get(f"/storage/{bucket}/download", params={"key": "日本/語.txt"})
    assert got.status_code == 200 and got.content == body
    # The header stays latin-1: an ASCII fallback, and the exact name in RFC 5987 form.
    assert (
        got.headers["content-disposition"] == "attachment; filename=\".txt\"; filename*=UTF-8''%E8%AA%9E.txt"
    )


def test_a_share_link_made_in_the_console_downloads_and_dies_when_revoked(console):
    url, clients, _raw, made = console
    olga = clients["olga"]
    bucket = _create(olga, made)
    body = secrets.token_bytes(10_000)
    assert _upload(olga, bucket, "shared.bin", body).status_code == 303
    made_share = olga.post(f"/storage/{bucket}/shares",
                           data={"csrf": _csrf(olga), "key": "shared.bin", "expires_hours": "2",
                                 "max_downloads": "5"})  # fmt: skip
    assert made_share.status_code == 201, made_share.text[:500]
    too_many = olga.post(f"/storage/{bucket}/shares",
                         data={"csrf": _csrf(olga), "key": "shared.bin", "expires_hours": "2",
                               "max_downloads": "1000001"})  # fmt: skip
    assert too_many.status_code == 422 and "max_downloads" in too_many.text, "shares' own cap"
    link = re.search(r'id="storage-share-url"[^>]*value="([^"]+)"', made_share.text).group(1)
    assert link.startswith(f"{url}/s/")
    page = _object_page(olga, bucket, "shared.bin")
    assert link not in page, "the link is shown once"
    assert "Versioning is off: this cannot be undone" in page

    with httpx.Client(follow_redirects=True, timeout=30) as anonymous:
        assert anonymous.get(link).content == body
        page = _object_page(olga, bucket, "shared.bin")
        share_id = re.search(r'<tr data-share="([^"]+)">', page).group(1)
        assert re.search(r'data-figure="downloads">1 of 5<', page), "the download is counted"
        elsewhere = _create(olga, made)
        wrong = olga.post(f"/storage/{elsewhere}/shares/{share_id}/revoke",
                          data={"csrf": _csrf(olga), "key": "shared.bin"})  # fmt: skip
        assert wrong.status_code == 404, "a link is revoked through its own bucket only"
        assert 'data-figure="state">active<' in _object_page(olga, bucket, "shared.bin")
        revoked = olga.post(f"/storage/{bucket}/shares/{share_id}/revoke",
                            data={"csrf": _csrf(olga), "key": "shared.bin"})  # fmt: skip
        assert revoked.status_code == 303, revoked.text[:500]
        assert anonymous.get(link).status_code == 410
        assert 'data-figure="state">revoked' in _object_page(olga, bucket, "shared.bin")


def test_a_user_without_a_grant_gets_403_everywhere_and_changes_nothing(console):
    _url, clients, raw, made = console
    olga, otto = clients["olga"], clients["otto"]
    bucket = _create(olga, made, versioning=True)
    body = b"keep me\n"
    assert _upload(olga, bucket, "keep.txt", body).status_code == 303
    made_share = olga.post(f"/storage/{bucket}/shares",
                           data={"csrf": _csrf(olga), "key": "keep.txt", "expires_hours": "1"})  # fmt: skip
    share_id = re.search(r'<tr data-share="([^"]+)">', made_share.text).group(1)
    before = _versions(raw, bucket, "keep.txt")

    for path in (f"/storage/{bucket}", f"/storage/{bucket}/object?key=keep.txt",
                 f"/storage/{bucket}/download?key=keep.txt"):  # fmt: skip
        assert otto.get(path).status_code == 403, path
    csrf = _csrf(otto)
    posts = [
        ("delete", {"key": "keep.txt", "confirm": "yes"}),
        ("restore", {"key": "keep.txt", "version_id": before[0][0] or "x"}),
        ("restore", {"key": "keep.txt", "op": "undelete"}),
        ("shares", {"key": "keep.txt", "expires_hours": "1"}),
        (f"shares/{share_id}/revoke", {"key": "keep.txt"}),
        ("settings", {"op": "grant", "subject": "user:otto", "level": "admin"}),
        ("settings", {"op": "delete", "confirm_name": bucket, "force": "on"}),
    ]
    for path, form in posts:
        answer = otto.post(f"/storage/{bucket}/{path}", data={"csrf": csrf, **form})
        assert answer.status_code == 403, (path, answer.status_code, answer.text[:300])
    upload = otto.post(f"/storage/{bucket}/upload", data={"csrf": csrf, "prefix": ""},
                       files={"file": ("keep.txt", io.BytesIO(b"overwritten"))})  # fmt: skip
    assert upload.status_code == 403
    assert _versions(raw, bucket, "keep.txt") == before and _raw_bytes(raw, bucket, "keep.txt") == body
    page = olga.get(f"/storage/{bucket}").text
    assert '<tr data-subject="user:otto">' not in page, "no grant given"
    assert '<tr data-key="keep.txt">' in page, "the object still listed"
    share = re.search(rf'<tr data-share="{share_id}">(.*?)</tr>', page, re.S)
    assert share, page[:2000]
    assert f'<a href="/storage/{bucket}/object?key=keep.txt">keep.txt</a>' in share.group(1)
    assert '<td data-figure="state">active</td>' in share.group(1), "the link still live"


def test_the_browser_pages_past_a_hundred_objects_and_shows_the_bucket_activity(console):
    _url, clients, raw, made = console
    olga = clients["olga"]
    bucket = _create(olga, made)
    for i in range(105):  # straight to the server: the listing is the server's, not the store's
        raw.put_object(bucket, f"p/obj-{i:03d}", io.BytesIO(b"x"), 1)
    first = olga.get(f"/storage/{bucket}", params={"prefix": "p/"}).text
    keys = re.findall(r'<tr data-key="(p/obj-\d+)">', first)
    assert keys == [f"p/obj-{i:03d}" for i in range(100)]
    following = re.search(r'id="storage-next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = olga.get(following).text
    assert re.findall(r'<tr data-key="(p/obj-\d+)">', second) == [f"p/obj-{i:03d}" for i in range(100, 105)]
    assert 'id="storage-next"' not in second and "« First" in second
    # This serve's own calls (the listings) are flushed to the store on its round and shown.
    page_with(olga, f"/storage/{bucket}", 'data-op="list_objects"', "the listing calls counted", 30)


def test_without_an_s3_endpoint_the_page_says_storage_is_not_configured(tmp_path):
    with serving(f"sqlite:///{tmp_path}/store.db", tmp_path / "serve.log", migrated=False) as cp:
        viewer = console_users(cp.url, cp.token, vera="viewer")["vera"]
        page = viewer.get("/storage")
        assert page.status_code == 200 and 'id="storage-not-configured"' in page.text
        assert "COREPLANE_S3__ENDPOINT" in page.text and 'id="storage-create"' not in page.text
        assert viewer.get("/storage/some-bucket").status_code == 503
        viewer.close()


def test_an_admin_of_the_bucket_deletes_it_by_typing_its_name(console):
    _url, clients, raw, made = console
    olga = clients["olga"]
    bucket = _create(olga, made)
    assert _upload(olga, bucket, "left.txt", b"left").status_code == 303
    form = {"csrf": _csrf(olga), "op": "delete"}
    wrong = olga.post(f"/storage/{bucket}/settings", data=form | {"confirm_name": "another"})
    assert wrong.status_code == 422 and "type the bucket&#39;s name" in wrong.text, wrong.text[:400]
    full = olga.post(f"/storage/{bucket}/settings", data=form | {"confirm_name": bucket})
    assert full.status_code == 409 and "not empty" in full.text, full.text[:400]
    assert raw.bucket_exists(bucket) and f'data-bucket="{bucket}"' in olga.get("/storage").text
    forced = olga.post(f"/storage/{bucket}/settings", data=form | {"confirm_name": bucket, "force": "on"})
    assert forced.status_code == 303 and forced.headers["location"] == "/storage"
    assert not raw.bucket_exists(bucket) and f'data-bucket="{bucket}"' not in olga.get("/storage").text
