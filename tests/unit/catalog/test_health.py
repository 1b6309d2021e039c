from datetime import datetime, timedelta

import pytest

from controlplane.catalog.health import HealthState, transition

T0 = datetime(2026, 1, 1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("before", "reported", "after"),
    [
        ("unknown", "passing", "passing"),
        ("unknown", "critical", "critical"),
        ("passing", "warning", "warning"),
        ("passing", "critical", "critical"),
        ("warning", "critical", "critical"),
    ],
)
def test_worse_news_applies_at_once(before, reported, after):
    assert transition(HealthState(before), reported, at(0), hold_s=10) == HealthState(after)


def test_better_news_waits_until_it_has_held():
    state = transition(HealthState("critical"), "passing", at(0), hold_s=10)
    assert state == HealthState("critical", "passing", at(0))
    state = transition(state, "passing", at(9.9), hold_s=10)
    assert state.state == "critical"
    assert transition(state, "passing", at(10), hold_s=10) == HealthState("passing")


def test_a_flap_during_the_hold_starts_it_over():
    state = transition(HealthState("critical"), "passing", at(0), hold_s=10)
    state = transition(state, "critical", at(5), hold_s=10)
    assert state == HealthState("critical")
    state = transition(state, "passing", at(6), hold_s=10)
    assert transition(state, "passing", at(14), hold_s=10).state == "critical"
    assert transition(state, "passing", at(16), hold_s=10).state == "passing"


def test_a_different_better_state_restarts_the_hold():
    state = transition(HealthState("critical"), "warning", at(0), hold_s=10)
    state = transition(state, "passing", at(8), hold_s=10)
    assert state == HealthState("critical", "passing", at(8))


def test_without_a_hold_better_news_applies_at_once():
    assert transition(HealthState("critical"), "passing", at(0), hold_s=0) == HealthState("passing")


def test_an_unknown_health_is_refused():
    with pytest.raises(ValueError, match="unknown health 'sick'"):
        transition(HealthState("passing"), "sick", at(0), hold_s=0)
