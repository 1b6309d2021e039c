"""Which request URLs go untraced, checked with OpenTelemetry's own ExcludeList (what the
FastAPI instrumentation builds from tracing.NOT_TRACED): the machine paths and a share
link's path, and never an API path that merely holds such a segment (an object key)."""

from __future__ import annotations

import pytest
from opentelemetry.util.http import ExcludeList, parse_excluded_urls

from controlplane import tracing


@pytest.fixture(scope="module")
def excluded() -> ExcludeList:
    return parse_excluded_urls(tracing.NOT_TRACED)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/s/abc123token",
        "https://cp.example.com/s/abc123token",
        "http://testserver/metrics",
        "http://testserver/metrics/backends",
        "http://testserver/healthz",
        "http://testserver/readyz",
        "http://testserver/ws/console",
        "http://testserver/static/charts.js",
    ],
)
def test_machine_paths_and_share_links_are_not_traced(excluded, url):
    assert excluded.url_disabled(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/api/v1/storage/b/objects/img/s/1.png",
        "http://127.0.0.1:8000/api/v1/storage/b/objects/s/x",
        "http://testserver/api/v1/storage/b/objects/logs/metrics",
        "http://testserver/api/v1/storage/b/objects/ws/a",
        "http://testserver/api/v1/services/kv",
        "http://testserver/storage/b",
    ],
)
def test_api_paths_with_such_a_segment_are_traced(excluded, url):
    assert not excluded.url_disabled(url)
