"""The failover's decisions, path by path, on plain data: which replica is promoted (or
why none is), what the plan does next given its steps, and what a partly failed
repoint leaves in the result."""

import uuid
from datetime import datetime, timedelta

from controlplane.actions.failover import (
    OFFSET_MAX_AGE,
    PROMOTE,
    REPOINT,
    Member,
    Offset,
    Step,
    choose_new_primary,
    next_phase,
    promote_failure,
    repoint_outcome,
    repoint_params,
    to_repoint,
)

NOW = datetime(2024, 5, 1, 12, 0, 0)
AGENT = uuid.UUID(int=1)
PRIMARY = Member("10.0.0.1:6379", "primary", "critical", AGENT)
A = Member("10.0.0.2:6379", "replica", "passing", AGENT)
B = Member("10.0.0.3:6379", "replica", "passing", AGENT)


def _choose(members, offsets=None, *, failed_instance=None, force=False):  # type: ignore[no-untyped-def]
    return choose_new_primary(
        members, offsets or {}, target="redis", failed_instance=failed_instance, force=force, now=NOW
    )


def _fresh(value: float) -> Offset:
    return Offset(value, NOW - timedelta(seconds=2))


def test_the_replica_with_the_highest_offset_is_promoted():
    choice = _choose([PRIMARY, A, B], {A.address: _fresh(900), B.address: _fresh(100)})
    assert choice.new_primary == A and choice.old_primary == PRIMARY
    assert choice.reason == f"promoting {A.address}"


def test_equal_offsets_go_to_the_highest_address_so_the_choice_is_stable():
    assert _choose([PRIMARY, B, A]).new_primary == B
    assert _choose([PRIMARY, A, B], {A.address: _fresh(5), B.address: _fresh(5)}).new_primary == B


def test_a_stale_offset_ranks_below_a_fresh_lower_one():
    stale = Offset(900, NOW - OFFSET_MAX_AGE - timedelta(seconds=1))
    choice = _choose([PRIMARY, A, B], {A.address: stale, B.address: _fresh(0)})
    assert choice.new_primary == B
    # Just inside the age it still counts.
    just_fresh = Offset(900, NOW - OFFSET_MAX_AGE)
    assert _choose([PRIMARY, A, B], {A.address: just_fresh, B.address: _fresh(0)}).new_primary == A


def test_a_primary_that_is_not_critical_is_not_failed_over_unless_forced():
    warning = Member(PRIMARY.address, "primary", "warning", AGENT)
    choice = _choose([warning, A, B])
    assert choice.new_primary is None and choice.old_primary == warning
    assert choice.reason == (
        f"the primary {warning.address} is warning; not failing over (pass force: true to do it anyway)"
    )
    assert _choose([warning, A, B], force=True).new_primary == B


def test_a_service_without_a_primary_is_refused():
    choice = _choose([A, B])
    assert choice.new_primary is None and choice.old_primary is None
    assert choice.reason == "service 'redis' has no primary in the catalog"


def test_the_named_failed_instance_is_the_old_primary_even_when_the_catalog_says_replica():
    # The catalog may already call it a replica; it must not be promoted back.
    failed = Member(A.address, "replica", "critical", AGENT)
    choice = _choose([PRIMARY, failed, B], failed_instance=failed.address)
    assert choice.old_primary == failed and choice.new_primary == B


def test_no_candidate_when_every_other_replica_is_critical_agentless_or_not_a_replica():
    members = [
        PRIMARY,
        Member("10.0.0.2:6379", "replica", "critical", AGENT),
        Member("10.0.0.3:6379", "replica", "passing", None),
        Member("10.0.0.4:6379", None, "passing", AGENT),
    ]
    choice = _choose(members, {m.address: _fresh(1) for m in members})
    assert choice.new_primary is None and choice.old_primary == PRIMARY
    assert choice.reason == "no healthy replica of 'redis' with an agent to promote"


def test_the_phases_in_order():
    promote = Step(PROMOTE, "succeeded", A.address)
    assert next_phase([]) == "choose"
    assert next_phase([Step(PROMOTE, "dispatched", A.address)]) == "wait"
    assert next_phase([promote]) == "repoint"
    assert next_phase([promote, Step(REPOINT, "running", B.address)]) == "wait"
    assert next_phase([promote, Step(REPOINT, "failed", B.address, "refused")]) == "finish"


def test_a_promote_that_failed_fails_the_failover_with_its_error_or_state():
    failed = [Step(PROMOTE, "failed", A.address, "READONLY You can't write")]
    assert next_phase(failed) == "promote_failed"
    assert promote_failure(A.address, failed) == f"promoting {A.address} failed: READONLY You can't write"
    cancelled = [Step(PROMOTE, "cancelled", A.address)]
    assert next_phase(cancelled) == "promote_failed"
    assert promote_failure(A.address, cancelled) == f"promoting {A.address} failed: cancelled"


def test_the_promote_step_is_found_by_kind_not_by_position():
    steps = [Step(REPOINT, "succeeded", B.address), Step(PROMOTE, "failed", A.address, "gone")]
    assert next_phase(steps) == "promote_failed"
    assert promote_failure(A.address, steps).endswith("failed: gone")


def test_every_other_instance_with_an_agent_is_repointed_but_not_the_old_primary():
    agentless = Member("10.0.0.4:6379", "replica", "passing", None)
    assert to_repoint([PRIMARY, A, B, agentless], new_primary=A.address, old_primary=PRIMARY.address) == [B]
    assert to_repoint([PRIMARY, A], new_primary=A.address, old_primary=PRIMARY.address) == []


def test_a_repoint_step_names_the_new_primary_by_host_and_port():
    assert repoint_params("redis", B.address, "[::1]:6380") == {
        "service": "redis",
        "instance": B.address,
        "primary_host": "[::1]",
        "primary_port": 6380,
    }


def test_a_repoint_that_fails_for_one_replica_is_reported_and_the_others_count():
    c = "10.0.0.4:6379"
    steps = [
        Step(PROMOTE, "succeeded", A.address),
        Step(REPOINT, "succeeded", B.address),
        Step(REPOINT, "failed", c, "Connection refused"),
    ]
    assert next_phase(steps) == "finish"
    assert repoint_outcome(steps) == ([B.address], [f"{c}: Connection refused"])
    assert repoint_outcome(steps[:1]) == ([], [])
