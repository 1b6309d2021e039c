"""The replay's pure parts: the moments it looks at, and how each firing is taken (rendered,
started, or held back by a dry run, the cooldown, the concurrency cap or a missing agent), with
the engine's own trigger code over events and metric points held in memory."""

import textwrap
import uuid
from datetime import datetime, timedelta

from controlplane.policy.engine import Firing, PolicyEngine
from controlplane.policy.preview import absence_moments, decide, event_moments, grid, metric_moments
from controlplane.policy.rules import Rule, parse_rules
from controlplane.store.models import InfrastructureEvent

T0 = datetime(2026, 1, 1, 12)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _rule(text: str) -> Rule:
    return parse_rules(textwrap.dedent(text).lstrip("\n"))[0]


def _firings(*seconds: float) -> list[tuple[datetime, list[Firing]]]:
    return [(at(s), [Firing({"service": "shop"}, f"at {s:g}")]) for s in seconds]


def _taken(rows) -> list[tuple[float, str, str | None]]:  # type: ignore[no-untyped-def]
    return [((r.at - T0).total_seconds(), r.outcome, r.held) for r in rows]


SCALE = """
- name: grow
  trigger: {{absence: {{service: shop, for_s: 60}}}}
  action: {{kind: {kind}, target: "{{{{ service }}}}", params: {{op: grow, n: 1}}}}
  cooldown_s: {cooldown}
  max_concurrency: {cap}
  dry_run: {dry}
"""


def _scale(kind: str = "scale", cooldown: float = 0, cap: int = 1, dry: str = "false") -> Rule:
    return _rule(SCALE.format(kind=kind, cooldown=cooldown, cap=cap, dry=dry))


def test_the_grid_ends_at_the_end_and_leaves_out_the_start():
    assert grid(at(0), at(45), 15) == [at(15), at(30), at(45)]
    assert grid(at(0), at(40), 15) == [at(10), at(25), at(40)]
    assert grid(at(0), at(0), 15) == []


def test_the_cooldown_holds_back_the_firings_in_between_and_says_how_long_is_left():
    rows = list(decide(_scale(cooldown=30, cap=10), _firings(0, 10, 29, 30, 45), engine=PolicyEngine()))
    assert _taken(rows) == [(0, "fired", None), (10, "suppressed", "cooldown"), (29, "suppressed", "cooldown"),
                            (30, "fired", None), (45, "suppressed", "cooldown")]  # fmt: skip
    assert rows[1].why == "at 10: cooldown, 20 s left"
    assert (rows[0].kind, rows[0].target, rows[0].params) == ("scale", "shop", {"op": "grow", "n": 1})


def test_the_concurrency_cap_counts_actions_started_within_action_s():
    rows = decide(_scale(cap=2), _firings(0, 1, 2, 29, 31), engine=PolicyEngine(), action_s=30)
    assert _taken(rows) == [(0, "fired", None), (1, "fired", None), (2, "suppressed", "concurrency"),
                            (29, "suppressed", "concurrency"), (31, "fired", None)]  # fmt: skip


def test_a_dry_run_only_says_what_it_would_do_and_never_starts_a_cooldown():
    rows = list(decide(_scale(cooldown=600, dry="true"), _firings(0, 1), engine=PolicyEngine()))
    assert _taken(rows) == [(0, "dry_run", "dry_run"), (1, "dry_run", "dry_run")]
    assert "would run scale on shop" in rows[0].why


def test_an_agent_step_without_an_agent_is_an_error_and_starts_nothing():
    rule = _scale(kind="celery.pool", cooldown=600)
    watched = iter([False, True])
    rows = decide(rule, _firings(0, 1), engine=PolicyEngine(), watched=lambda target, params: next(watched))
    assert _taken(rows) == [(0, "error", "no_agent"), (1, "fired", None)]


def test_a_template_that_does_not_render_is_an_error_row():
    rule = _rule("""
        - name: bad
          trigger: {absence: {service: shop, for_s: 60}}
          action: {kind: scale, target: "{{ event.service_name }}"}
        """)
    (row,) = decide(rule, _firings(0), engine=PolicyEngine())
    assert (row.outcome, row.held) == ("error", "render") and "cannot render" in row.why


def _event(seconds: float, service: str = "shop", status: str | None = None) -> InfrastructureEvent:
    return InfrastructureEvent(id=uuid.uuid4(), event_type="data.changed", timestamp=at(seconds),
                               service_name=service, status=status, details={"tags": ["t"]})  # fmt: skip


def test_event_rounds_fall_on_the_events_inside_the_window_and_match_as_the_engine_does():
    rule = _rule("""
        - name: inv
          trigger: {event: {type: data.changed, service: shop, status: ok}}
          action: {kind: cache.invalidate, target: "{{ event.service_name }}", params: {tags: "{{ event.details.tags }}"}}
          cooldown_s: 0
          max_concurrency: 100
        """)  # fmt: skip
    events = [_event(-5, status="ok"), _event(5, status="ok"), _event(6, "elsewhere", "ok"),
              _event(7, status="failed"), _event(9, status="ok"), _event(120, status="ok")]  # fmt: skip
    # session unused: with for_s 0 the engine never asks the store whether an event was superseded
    moments = event_moments(None, PolicyEngine(), rule, events, start=at(0), end=at(100))  # type: ignore[arg-type]
    rows = list(decide(rule, moments, engine=PolicyEngine()))
    assert _taken(rows) == [(5, "fired", None), (9, "fired", None)]  # before start, filtered, after end
    assert rows[0].params == {"tags": ["t"]} and rows[0].why == "event data.changed ok on shop"


def test_a_metric_rule_holds_for_for_s_on_the_grid_then_starts_afresh():
    rule = _rule("""
        - name: deep
          trigger:
            metric: {name: q, agg: max, window_s: 10, op: ">", threshold: 50, for_s: 30}
          action: {kind: scale, target: celery}
          cooldown_s: 0
          max_concurrency: 100
        """)
    # High from 0 s to 100 s, sampled every 5 s.
    points = [(at(s), 100.0 if 0 <= s <= 100 else 0.0) for s in range(-30, 200, 5)]
    engine = PolicyEngine()
    moments = metric_moments(engine, rule, points, grid(at(-30), at(200), 15))
    rows = list(decide(rule, moments, engine=engine))
    # Grid at -25, -10, 5, 20, ...: holding from 5, fires at 35; holds again from 50, fires at 80;
    # at 95 and 110 it holds (the 10 s window still sees 100), then it drops and never fires again.
    assert _taken(rows) == [(35, "fired", None), (80, "fired", None)]
    assert rows[0].why == "max(q[10s]) = 100 > 50 for 30 s"


def test_a_metric_dip_restarts_the_hold():
    rule = _rule("""
        - name: deep
          trigger:
            metric: {name: q, agg: avg, window_s: 1, op: ">=", threshold: 1, for_s: 20}
          action: {kind: scale, target: celery}
        """)
    values = {0: 1, 10: 1, 20: 0, 30: 1, 40: 1, 50: 1}  # one sample per moment
    points = [(at(s), float(v)) for s, v in values.items()]
    engine = PolicyEngine()
    rows = decide(rule, metric_moments(engine, rule, points, [at(s) for s in values]), engine=engine)
    assert _taken(rows) == [(50, "fired", None)]  # 0..10 held only 10 s; 30..50 holds 20 s


def test_an_absence_rule_fires_once_nothing_was_heard_for_for_s():
    rule = _rule("""
        - name: quiet
          trigger: {absence: {service: shop, for_s: 30}}
          action: {kind: scale, target: celery}
          cooldown_s: 60
        """)
    stamps = [at(s) for s in range(0, 61, 10)]  # heard until 60 s, then silence
    moments = absence_moments(rule, stamps, grid(at(0), at(180), 15))
    rows = list(decide(rule, moments, engine=PolicyEngine()))
    assert _taken(rows) == [(105, "fired", None), (120, "suppressed", "cooldown"), (135, "suppressed", "cooldown"),
                            (150, "suppressed", "cooldown"), (165, "fired", None), (180, "suppressed", "cooldown")]  # fmt: skip
    assert rows[0].why.endswith("from shop for 30 s")
