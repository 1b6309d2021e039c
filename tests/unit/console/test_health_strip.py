"""The instance page's health strip is laid out as SVG attributes (the CSP refuses inline
styles): segments tile the 0-100 strip in order, and a blip too short to see gets a
minimum width instead of vanishing."""

from datetime import datetime, timedelta
from itertools import pairwise

from console.catalog import STRIP_MIN_SHARE, _strip
from controlplane.catalog.instances import HEALTH_EVENT

NOW = datetime(2026, 1, 1, 12, 0, 0)


def _health(at: datetime, previous: str, status: str) -> dict:
    return {"event_type": HEALTH_EVENT, "at": at, "status": status, "details": {"previous": previous}}


def test_segments_tile_the_strip_and_a_blip_stays_visible():
    start = NOW - timedelta(hours=1)
    rows = [  # newest first, as history() returns them
        _health(NOW - timedelta(minutes=30) + timedelta(milliseconds=500), "critical", "passing"),
        _health(NOW - timedelta(minutes=30), "passing", "critical"),
    ]
    segments = _strip(rows, "passing", start, NOW)
    assert [s["health"] for s in segments] == ["passing", "critical", "passing"]
    assert segments[0]["x"] == 0
    for left, right in pairwise(segments):
        assert abs(left["x"] + left["width"] - right["x"]) < 0.01
    assert abs(segments[-1]["x"] + segments[-1]["width"] - 100) < 0.01
    assert segments[1]["width"] >= STRIP_MIN_SHARE * 0.99  # half a second of an hour: 0.014 %
