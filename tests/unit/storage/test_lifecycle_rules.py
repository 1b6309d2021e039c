"""Lifecycle's pure parts: which rules are refused (naming the field), what a set of rules
sends away at a given time (current objects by age, noncurrent versions by the time their
successor was written), and the configuration the server is sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from controlplane.errors import Rejected, TooLarge
from controlplane.settings import StorageSettings
from controlplane.storage import lifecycle
from controlplane.storage.objects import ObjectInfo

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def _v(key: str, vid: str, days_ago: float, *, latest: bool = False, marker: bool = False) -> ObjectInfo:
    return ObjectInfo(
        bucket="b",
        key=key,
        size=0 if marker else 1,
        etag="",
        last_modified=NOW - timedelta(days=days_ago),
        content_type=None,
        version_id=vid,
        is_latest=latest,
        is_delete_marker=marker,
    )


def _rule(**kw: object) -> dict[str, object]:
    return {"id": "r", "prefix": "", "enabled": True} | kw


def _field(rules: object) -> str:
    with pytest.raises(Rejected) as caught:
        lifecycle.parse(rules)
    return caught.value.errors[0]["field"]


# -- parse ----------------------------------------------------------------------------------


def test_a_good_rule_is_normalised() -> None:
    found = lifecycle.parse([{"id": "logs", "prefix": "logs/", "expire_days": 30}])
    assert found == [{"id": "logs", "prefix": "logs/", "enabled": True, "expire_days": 30}]


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ("nope", "rules"),
        ([{"id": "a"}], "rules[0]"),  # no action
        ([{"id": "a", "expire_days": 0}], "rules[0].expire_days"),
        ([{"id": "a", "expire_days": 36501}], "rules[0].expire_days"),
        ([{"id": "a", "expire_days": "3"}], "rules[0].expire_days"),
        ([{"id": "a", "expire_days": True}], "rules[0].expire_days"),
        ([{"id": "a", "noncurrent_days": -1}], "rules[0].noncurrent_days"),
        ([{"id": "", "expire_days": 1}], "rules[0].id"),
        ([{"expire_days": 1}], "rules[0].id"),
        ([{"id": "a", "expire_days": 1}, {"id": "a", "noncurrent_days": 1}], "rules[1].id"),
        ([{"id": "a", "expire_days": 1, "prefix": "../x"}], "rules[0].prefix"),
        ([{"id": "a", "expire_days": 1, "prefix": "/abs"}], "rules[0].prefix"),
        ([{"id": "a", "expire_days": 1, "enabled": "yes"}], "rules[0].enabled"),
        ([{"id": "a", "expire_days": 1, "days": 3}], "rules[0].days"),
        (["rule"], "rules[0]"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(rules: object, field: str) -> None:
    assert _field(rules) == field


def test_more_than_fifty_rules_are_too_many() -> None:
    with pytest.raises(TooLarge):
        lifecycle.parse([{"id": f"r{i}", "expire_days": 1} for i in range(lifecycle.MAX_RULES + 1)])
    assert len(lifecycle.parse([{"id": f"r{i}", "expire_days": 1} for i in range(lifecycle.MAX_RULES)])) == 50


# -- evaluate -------------------------------------------------------------------------------


def test_a_current_object_expires_once_old_enough() -> None:
    rows = [_v("a", "1", 1.5, latest=True)]
    assert lifecycle.evaluate(rows, [_rule(expire_days=2)], NOW) == []
    (doomed,) = lifecycle.evaluate(rows, [_rule(expire_days=1)], NOW)
    assert (doomed.key, doomed.version_id, doomed.action, doomed.rule) == ("a", "1", "expire", "r")


def test_only_keys_under_the_prefix_and_enabled_rules_count() -> None:
    rows = [_v("logs/a", "1", 10, latest=True), _v("keep/a", "2", 10, latest=True)]
    found = lifecycle.evaluate(rows, [_rule(prefix="logs/", expire_days=1)], NOW)
    assert [d.key for d in found] == ["logs/a"]
    off = _rule(prefix="logs/", expire_days=1, enabled=False)
    assert lifecycle.evaluate(rows, lifecycle.in_force([off]), NOW) == []
    on = _rule(id="on", prefix="keep/", expire_days=1)
    assert lifecycle.in_force([off, on]) == [on]
    assert lifecycle.in_force(None) == []


def test_a_current_delete_marker_has_nothing_to_expire() -> None:
    rows = [_v("a", "m", 10, latest=True, marker=True), _v("a", "1", 20)]
    assert lifecycle.evaluate(rows, [_rule(expire_days=1)], NOW) == []


def test_a_noncurrent_version_counts_from_its_successor_not_its_own_age() -> None:
    # v1 written 100 days ago, replaced by v2 3 days ago: noncurrent for 3 days only.
    rows = [_v("a", "v2", 3, latest=True), _v("a", "v1", 100)]
    assert lifecycle.evaluate(rows, [_rule(noncurrent_days=5)], NOW) == []
    (doomed,) = lifecycle.evaluate(rows, [_rule(noncurrent_days=3)], NOW)
    assert (doomed.version_id, doomed.action) == ("v1", "noncurrent")
    assert doomed.since == NOW - timedelta(days=3)


def test_each_noncurrent_version_has_its_own_successor() -> None:
    rows = [_v("a", "v3", 1, latest=True), _v("a", "v2", 10), _v("a", "v1", 30)]
    found = lifecycle.evaluate(rows, [_rule(noncurrent_days=5)], NOW)
    assert [d.version_id for d in found] == ["v1"]  # v2 is noncurrent for 1 day, v1 for 10
    found = lifecycle.evaluate(rows, [_rule(noncurrent_days=1)], NOW)
    assert sorted(d.version_id or "" for d in found) == ["v1", "v2"]


def test_a_delete_marker_makes_the_version_before_it_noncurrent() -> None:
    rows = [_v("a", "m", 4, latest=True, marker=True), _v("a", "v1", 50)]
    (doomed,) = lifecycle.evaluate(rows, [_rule(noncurrent_days=4)], NOW)
    assert doomed.version_id == "v1"


def test_the_listing_order_does_not_matter() -> None:
    rows = [_v("a", "v1", 30), _v("b", "x", 9, latest=True), _v("a", "v2", 10, latest=True)]
    found = lifecycle.evaluate(rows, [_rule(expire_days=5, noncurrent_days=5)], NOW)
    assert [(d.key, d.version_id, d.action) for d in found] == [
        ("a", "v2", "expire"),
        ("a", "v1", "noncurrent"),
        ("b", "x", "expire"),
    ]


def test_a_version_doomed_by_two_rules_is_listed_once_with_the_first() -> None:
    rows = [_v("logs/a", "1", 10, latest=True)]
    rules = [_rule(id="first", prefix="logs/", expire_days=1), _rule(id="second", expire_days=2)]
    (doomed,) = lifecycle.evaluate(rows, rules, NOW)
    assert doomed.rule == "first"


def test_a_naive_now_is_taken_as_utc() -> None:
    rows = [_v("a", "1", 2, latest=True)]
    assert len(lifecycle.evaluate(rows, [_rule(expire_days=2)], NOW.replace(tzinfo=None))) == 1


# -- the server's form ----------------------------------------------------------------------


def test_the_server_configuration_carries_each_rule() -> None:
    rules = lifecycle.parse(
        [
            {"id": "a", "prefix": "logs/", "expire_days": 7},
            {"id": "b", "noncurrent_days": 3, "enabled": False},
        ]
    )
    config = lifecycle.to_server(rules)
    first, second = config.rules
    assert (first.rule_id, first.rule_filter.prefix, first.expiration.days) == ("a", "logs/", 7)
    assert first.noncurrent_version_expiration is None
    assert (second.status, second.noncurrent_version_expiration.noncurrent_days) == ("Disabled", 3)
    assert second.expiration is None


# -- when the leader's round runs a bucket --------------------------------------------------


def test_a_bucket_is_due_once_per_interval() -> None:
    hour, now = timedelta(hours=1), NOW.replace(tzinfo=None)
    assert lifecycle.due(None, now, hour)  # not run since this process leads
    assert not lifecycle.due(now, now, hour)
    assert not lifecycle.due(now - hour + timedelta(seconds=1), now, hour)
    assert lifecycle.due(now - hour, now, hour)
    assert lifecycle.due(now + timedelta(days=2), now, hour)  # the clock went back: not held off


def test_the_interval_is_bounded() -> None:
    assert StorageSettings().lifecycle_interval_s == 3600
    for bad in (59, 86401):
        with pytest.raises(ValidationError):
            StorageSettings(lifecycle_interval_s=bad)
