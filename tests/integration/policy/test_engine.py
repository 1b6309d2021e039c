"""One round of the policy engine against the real store, on both dialects, with the
round's time given: an event rule held for longer than the engine's one-minute look-back
still fires once the event has been held long enough."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from controlplane.policy.engine import RULES_SETTING, PolicyEngine
from controlplane.store import partitions
from controlplane.store.models import InfrastructureEvent
from controlplane.store.settings_store import put_setting

T0 = datetime(2026, 11, 28, 12, 0, 0)
RULE = """
- name: long-hold
  trigger:
    event: {type: deploy.stuck, for_s: 90}
  action: {kind: cache.invalidate, target: web, params: {tags: [pages]}}
  dry_run: true
"""


def test_an_event_held_past_the_lookback_fires_once_held_long_enough(store):
    if store.dialect == "postgresql":
        with store.engine.begin() as conn:
            partitions.ensure_partitions(conn, table="infrastructure_events", days={T0.date()})
    with store.sessions.begin() as session:
        put_setting(session, setting_type=RULES_SETTING, value={"yaml": RULE}, expected_version=0,
                    updated_by="test", now=T0)  # fmt: skip
        session.add(InfrastructureEvent(id=uuid.uuid4(), event_type="deploy.stuck", timestamp=T0,
                                        service_name="web", details={}, status="critical"))  # fmt: skip
    engine = PolicyEngine()
    outcomes = {}
    for after_s in (30, 89, 95, 100):
        with store.sessions.begin() as session:
            outcomes[after_s] = [
                r.outcome for r in engine.run_once(session, now=T0 + timedelta(seconds=after_s))
            ]
    # not yet held for 90 s, then fired (a dry run: recorded, nothing started) exactly once
    assert outcomes == {30: [], 89: [], 95: ["dry_run"], 100: []}
