"""Storage analytics' pure parts: prefixes, the top 10, histogram buckets from cumulative
counts, quantiles over summed buckets, and the window names."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from controlplane.errors import Rejected
from controlplane.storage import analytics
from controlplane.storage.analytics import Count, per_bucket, prefix_of, quantile, window_of


@pytest.mark.parametrize(
    ("key", "prefix"),
    [("logs/2026/a.txt", "logs/"), ("logs/", "logs/"), ("top.bin", ""), ("a b/c", "a b/")],
)
def test_a_prefix_is_the_first_path_segment(key, prefix):
    assert prefix_of(key) == prefix


def test_the_top_prefixes_are_the_largest_by_bytes_then_by_name():
    count = Count()
    for i in range(15):
        count.add(f"p{i:02d}/x", 100 + i)
    count.add("p00/y", 1000)
    count.add("root", 5)
    top = count.top()
    assert len(top) == 10 and top[0] == ("p00/", 1100)
    assert [p for p, _ in top[1:]] == [f"p{i:02d}/" for i in range(14, 5, -1)]
    assert (count.objects, count.bytes, count.cursor) == (17, sum(100 + i for i in range(15)) + 1005, "root")


def test_prefixes_past_the_cap_fold_into_other(monkeypatch):
    monkeypatch.setattr(analytics, "MAX_PREFIXES", 3)
    count = Count()
    for name in ("a/1", "b/1", "c/1", "d/1", "e/1", "a/2"):
        count.add(name, 10)
    assert dict(count.prefixes) == {"a/": 20, "b/": 10, "c/": 10, analytics.OTHER: 20}


def test_cumulative_buckets_become_counts_per_bucket_without_the_empty_ones():
    cumulative = [(0.01, 2.0), (0.005, 2.0), (0.1, 5.0), (math.inf, 6.0), (0.5, 5.0)]
    assert per_bucket(cumulative) == [("0.005", 2.0), ("0.1", 3.0), ("+Inf", 1.0)]
    assert per_bucket([(0.1, 0.0), (math.inf, 0.0)]) == []


def test_a_quantile_interpolates_inside_its_bucket_as_prometheus_does():
    # 10 calls in (0, 0.1], 10 in (0.1, 0.2]: p50 at the first bucket's top, p95 at 0.19.
    buckets = {"0.1": 10.0, "0.2": 10.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.95, buckets) == pytest.approx(0.19)
    assert quantile(0.25, buckets) == pytest.approx(0.05)


def test_a_quantile_in_the_inf_bucket_is_the_highest_finite_bound_and_none_without_calls():
    assert quantile(0.95, {"0.1": 1.0, "+Inf": 99.0}) == pytest.approx(0.1)
    assert quantile(0.95, {}) is None
    assert quantile(0.5, {"0.1": 0.0}) is None


def test_summed_buckets_of_two_processes_give_the_deployments_quantile():
    fast = {"0.01": 90.0}
    slow = {"1": 10.0}
    merged = {le: fast.get(le, 0.0) + slow.get(le, 0.0) for le in {*fast, *slow}}
    # 95 % of 100 calls: the 95th is the 5th of the 10 slow ones.
    assert quantile(0.95, merged) == pytest.approx(0.01 + (1 - 0.01) * 0.5)


def test_a_window_is_one_of_four_names():
    now = datetime(2026, 1, 2, 3, 4, 5)
    since, until, step = window_of("6h", now)
    assert (until - since, until, step) == (timedelta(hours=6), now, 300)
    for bad in ("2h", "", "1H", "7d " * 3):
        with pytest.raises(Rejected) as refused:
            window_of(bad, now)
        assert refused.value.errors[0]["field"] == "window"
