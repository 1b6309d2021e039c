"""The action lifecycle on both dialects: idempotency, dispatch once, retries with
backoff, timeouts, cancellation of a plan with its steps, and the audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from controlplane.actions import lifecycle
from controlplane.errors import Conflict
from controlplane.store.models import Agent

T0 = datetime(2026, 11, 28, 12, 0, 0)


def _agent(session) -> uuid.UUID:  # type: ignore[no-untyped-def]
    agent = Agent(name=f"a-{uuid.uuid4().hex[:6]}", token_digest=uuid.uuid4().hex, registered_at=T0)
    session.add(agent)
    session.flush()
    return agent.id


def _create(session, agent_id, **kwargs):  # type: ignore[no-untyped-def]
    defaults = {"kind": "redis.promote", "target": "redis", "params": {}, "requested_by": "test", "now": T0}
    return lifecycle.create(session, agent_id=agent_id, **(defaults | kwargs))


def test_an_idempotency_key_makes_one_action_and_a_claim_dispatches_it_once(store):
    with store.sessions.begin() as session:
        agent_id = _agent(session)
        first, created = _create(session, agent_id, idempotency_key="k1")
        again, created_again = _create(session, agent_id, idempotency_key="k1")
        assert created and not created_again and again.id == first.id
    with store.sessions.begin() as session:
        assert [a.id for a in lifecycle.claim(session, agent_id, now=T0)] == [first.id]
    with store.sessions.begin() as session:
        assert lifecycle.claim(session, agent_id, now=T0) == []
        moves = [(a.from_state, a.to_state) for a in lifecycle.audit(session, first.id)]
        assert moves == [(None, "pending"), ("pending", "dispatched")]


def test_a_failure_with_attempts_left_is_retried_after_a_backoff(store):
    with store.sessions.begin() as session:
        agent_id = _agent(session)
        _create(session, agent_id, max_attempts=2)
    with store.sessions.begin() as session:
        (claimed,) = lifecycle.claim(session, agent_id, now=T0)
        lifecycle.finish(session, claimed, ok=False, output={}, error="boom", actor="agent", now=T0)
        assert claimed.state == "pending" and claimed.not_before == T0 + timedelta(seconds=1)
    with store.sessions.begin() as session:
        assert lifecycle.claim(session, agent_id, now=T0 + timedelta(seconds=0.5)) == []  # backing off
        (again,) = lifecycle.claim(session, agent_id, now=T0 + timedelta(seconds=1))
        lifecycle.finish(session, again, ok=False, output={}, error="boom again", actor="agent", now=T0)
        assert again.state == "failed" and again.attempts == 2
        assert again.result == {"output": {}, "error": "boom again"}


def test_an_action_without_a_result_times_out(store):
    with store.sessions.begin() as session:
        agent_id = _agent(session)
        _create(session, agent_id, timeout_s=30)
    with store.sessions.begin() as session:
        (claimed,) = lifecycle.claim(session, agent_id, now=T0)
    with store.sessions.begin() as session:
        assert lifecycle.expire_overdue(session, now=T0 + timedelta(seconds=29)) == 0
        assert lifecycle.expire_overdue(session, now=T0 + timedelta(seconds=30)) == 1
    with store.sessions.begin() as session:
        (last,) = lifecycle.audit(session, claimed.id)[-1:]
        assert (last.to_state, last.actor) == ("failed", "engine")
        assert "no result within 30 s" in last.note


def test_cancelling_a_plan_cancels_its_unfinished_steps_and_a_finished_one_conflicts(store):
    with store.sessions.begin() as session:
        agent_id = _agent(session)
        plan, _ = _create(session, None, kind="cache.invalidate", target="cache")
        step, _ = _create(session, agent_id, kind="cache.flush", parent_id=plan.id)
        lifecycle.cancel(session, plan, actor="operator:ops", now=T0, note="wrong tag")
        assert (plan.state, step.state) == ("cancelled", "cancelled")
        with pytest.raises(Conflict, match="nothing to cancel"):
            lifecycle.cancel(session, plan, actor="operator:ops", now=T0)
        with pytest.raises(Conflict, match="cannot become running"):
            lifecycle.move(session, step, "running", actor="agent", now=T0)


def test_an_action_keeps_the_links_it_is_created_with_and_a_step_its_parents_trace(store):
    # A rule's action links the events that fired it; a plan's step links its own things
    # and carries its parent's trace, never the parent's other links.
    parent_links = {"events": ["e-1"], "trace_id": "a" * 32, "traceparent": f"00-{'a' * 32}-{'b' * 16}-01"}
    with store.sessions.begin() as session:
        agent_id = _agent(session)
        parent, _ = _create(session, None, kind="failover", links=parent_links)
        step, _ = _create(session, agent_id, parent_id=parent.id, links={"instance": "10.0.0.5:6379"})
        assert parent.links["events"] == ["e-1"]
        # The parent's trace is the creating round's when tracing is set up, else the one given.
        trace = {k: parent.links[k] for k in ("trace_id", "traceparent")}
        assert step.links == {"instance": "10.0.0.5:6379", **trace}
