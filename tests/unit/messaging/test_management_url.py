"""The management client takes its credentials out of the URL (into basic auth), so no URL it
requests or reports carries them."""

from __future__ import annotations

from controlplane.messaging.management import Management, split_credentials


def test_credentials_leave_the_url_for_basic_auth():
    base, auth = split_credentials("http://ops%40corp:s3cr%2Ft@127.0.0.1:15672/")
    assert base == "http://127.0.0.1:15672" and auth == ("ops@corp", "s3cr/t")
    assert split_credentials("https://[::1]:15671/rabbit/") == ("https://[::1]:15671/rabbit", None)


def test_the_client_never_holds_them_in_its_base_url():
    with Management("http://guest:guest@127.0.0.1:15672", "/") as api:
        assert "guest" not in str(api._client.base_url)
        assert api._vhost_path("queues", "a/b") == "/api/queues/%2F/a%2Fb"
