"""Share links' pure rules: a link's state, the ranges, when a presigned PUT is refused, and
the download's file name (no key can forge a header field)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from controlplane.errors import Rejected
from controlplane.settings import ServerSettings, Settings
from controlplane.storage import objects, shares
from controlplane.store.models import StorageShare

NOW = datetime(2026, 1, 1, 12, 0, 0)


def _share(**kw: object) -> StorageShare:
    fields = {
        "expires_at": NOW + timedelta(hours=1),
        "max_downloads": None,
        "downloads": 0,
        "revoked_at": None,
    }
    return StorageShare(**(fields | kw))


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({}, "active"),
        ({"max_downloads": 2, "downloads": 1}, "active"),
        ({"max_downloads": 2, "downloads": 2}, "exhausted"),
        ({"expires_at": NOW}, "expired"),  # the instant it expires it is dead
        ({"expires_at": NOW - timedelta(seconds=1), "max_downloads": 1, "downloads": 1}, "expired"),
        ({"revoked_at": NOW, "expires_at": NOW - timedelta(days=1)}, "revoked"),  # revocation says most
    ],
)
def test_a_share_is_in_the_first_state_that_holds(fields, state):
    assert shares.state_of(_share(**fields), NOW) == state


@pytest.mark.parametrize("seconds", [0, -5, 3601])
def test_an_expiry_outside_its_range_is_refused_naming_the_field(seconds):
    with pytest.raises(Rejected) as refused:
        shares.expiry(seconds, 3600)
    assert refused.value.errors[0]["field"] == "expires_s"
    assert "1 to 3600" in str(refused.value)


def test_an_expiry_within_its_range_is_that_many_seconds():
    assert shares.expiry(1, 3600) == timedelta(seconds=1)
    assert shares.expiry(3600, 3600) == timedelta(hours=1)


@pytest.mark.parametrize("cap", [0, -1, shares.MAX_DOWNLOADS + 1])
def test_a_download_cap_outside_its_range_is_refused(cap):
    with pytest.raises(Rejected) as refused:
        shares.download_cap(cap)
    assert refused.value.errors[0]["field"] == "max_downloads"


def test_no_download_cap_and_the_extremes_are_taken():
    assert [shares.download_cap(c) for c in (None, 1, shares.MAX_DOWNLOADS)] == [
        None,
        1,
        shares.MAX_DOWNLOADS,
    ]


def test_a_presigned_put_is_refused_where_coreplane_could_not_enforce_its_limits():
    assert shares.presigned_put_refusal(None, 50.0) is None
    assert "quota" in (shares.presigned_put_refusal(10, 50.0) or "")
    # A 1 GB cap is below the 5 GiB one S3 PUT may store: the server would not hold to it.
    assert "max_object_gb" in (shares.presigned_put_refusal(None, 1.0) or "")


@pytest.mark.parametrize(
    ("key", "fallback", "exact"),
    [
        ("reports/2026/q1.pdf", "q1.pdf", "q1.pdf"),
        ('a/x".pdf\r\nSet-Cookie: y', "x_.pdf__Set-Cookie__y", "x%22.pdf%0D%0ASet-Cookie%3A%20y"),
        ("dir/été; name=evil.txt", "ete__name_evil.txt", "%C3%A9t%C3%A9%3B%20name%3Devil.txt"),
        ("folder/", "folder", "folder"),
        ("日本", "download", "%E6%97%A5%E6%9C%AC"),
    ],
)
def test_the_download_name_is_the_keys_last_segment_safely_quoted(key, fallback, exact):
    header = objects.content_disposition(key)
    assert header == f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"
    assert "\r" not in header and "\n" not in header and header.count('"') == 2


def test_a_link_is_the_base_then_s_then_the_token():
    unset = Settings(server=ServerSettings(public_url=None))
    assert shares.link(unset, "http://cp.example:8000/", "tok") == "http://cp.example:8000/s/tok"
    assert shares.link(unset, "https://cp.example/base", "tok") == "https://cp.example/base/s/tok"


def test_a_link_is_on_the_public_url_when_one_is_set():
    public = Settings(server=ServerSettings(public_url="https://files.example/"))
    assert shares.link(public, "http://127.0.0.1:8000/", "tok") == "https://files.example/s/tok"
