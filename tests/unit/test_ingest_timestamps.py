"""The ingest parser over RFC 3339 timestamps (issue 12, finding 7): any such string
either parses to the UTC time it names or is refused as invalid input (a 422 at the
API), never an exception of another kind."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controlplane.schemas.ingest import MetricPointIn


@st.composite
def rfc3339(draw) -> tuple[str, datetime | None]:  # type: ignore[no-untyped-def]
    """(text, the UTC time it names, or None when that falls outside years 1..9999)."""
    local = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
    if not draw(st.booleans()):
        local = local.replace(microsecond=0)
    zone = draw(st.one_of(st.just("Z"), st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)))
    if zone == "Z":
        offset, suffix = timedelta(0), "Z"
    else:
        sign, minutes = ("-" if zone < 0 else "+"), abs(zone)
        offset, suffix = timedelta(minutes=zone), f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    separator = draw(st.sampled_from("Tt "))
    text = local.isoformat(sep=separator) + suffix
    try:
        expected = local.replace(tzinfo=timezone(offset)).astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        expected = None
    return text, expected


def parse(timestamp: str) -> datetime:
    raw = f'{{"metric_type": "m", "service_name": "s", "timestamp": "{timestamp}", "value": 1}}'
    return MetricPointIn.model_validate_json(raw).timestamp


@settings(max_examples=500, deadline=None, database=None)
@given(rfc3339())
@example(("9999-12-31T23:59:59-23:59", None))
@example(("0001-01-01T00:00:00+23:59", None))
@example(("9999-12-31T23:59:59+23:59", datetime(9999, 12, 31, 0, 0, 59)))
def test_an_rfc3339_timestamp_parses_to_its_utc_time_or_is_refused(case):
    text, expected = case
    if expected is None:
        with pytest.raises(ValidationError, match="outside years 1 to 9999"):
            parse(text)
    else:
        assert parse(text) == expected


@given(st.text(max_size=40))
@settings(max_examples=300, deadline=None, database=None)
def test_any_string_parses_or_is_refused_as_invalid(text):
    try:
        value = parse(text.replace("\\", "").replace('"', ""))
    except ValidationError:
        return
    assert value.tzinfo is None  # stored as naive UTC
