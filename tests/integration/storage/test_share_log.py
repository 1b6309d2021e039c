"""A share link's token is its credential: a real `coreplane serve` opening one writes its
path to the access log as /s/<redacted>, and the token appears nowhere in the log."""

from __future__ import annotations

import httpx

from tests.support.serve import private_serve
from tests.support.storage import bucket_name, purge, raw_client


def test_the_access_log_never_shows_a_share_token(services, tmp_path):
    name = bucket_name("log")
    try:
        with private_serve(tmp_path) as (url, admin, log):
            auth = {"Authorization": f"Bearer {admin}"}
            with httpx.Client(base_url=url, headers=auth, timeout=30) as api:
                assert api.post("/api/v1/storage/buckets", json={"name": name}).status_code == 201
                assert api.put(f"/api/v1/storage/{name}/objects/a.txt", content=b"hello").status_code in (
                    200,
                    201,
                )
                share = api.post("/api/v1/storage/shares", json={"bucket": name, "key": "a.txt"})
                assert share.status_code == 201, share.text
                token = share.json()["token"]
            opened = httpx.get(f"{url}/s/{token}", follow_redirects=True, timeout=30)
            assert opened.status_code == 200 and opened.content == b"hello"
            assert httpx.get(f"{url}/s/{token}x", timeout=30).status_code == 404
        text = log.read_text()
        assert '"GET /s/<redacted> HTTP/1.1" 302' in text, text[-2000:]
        assert '"GET /s/<redacted> HTTP/1.1" 404' in text
        assert token not in text
    finally:
        purge(raw_client(services), name)
