"""The rule language: what parses, what does not (and where it says so), and how templates render."""

import textwrap

import pytest
import yaml

from controlplane.policy.rules import (
    KNOWN_KINDS,
    RuleError,
    dump_rules,
    load_default_rules,
    parse_rules,
    render,
)


def _yaml(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _only_problem(text: str) -> dict:
    with pytest.raises(RuleError) as caught:
        parse_rules(_yaml(text))
    assert len(caught.value.problems) == 1, caught.value.problems
    return caught.value.problems[0]


METRIC_RULE = """
- name: r
  trigger:
    metric:
      name: coreplane_celery_queue_length
      op: "{op}"
      threshold: {threshold}
      agg: {agg}
      window_s: {window_s}
  action: {{kind: scale, target: celery}}
"""


def _metric(op=">", threshold="1", agg="avg", window_s="60") -> str:
    return METRIC_RULE.format(op=op, threshold=threshold, agg=agg, window_s=window_s)


# (yaml, path, line, part of the message)
BROKEN = {
    "unknown action kind": (
        """
        - name: r
          trigger:
            event: {type: health}
          action:
            kind: failovr
            target: x
        """,
        "rules[0].action.kind",
        5,
        "unknown action kind 'failovr'; known: cache.flush, cache.invalidate, celery.pool, drain, failover,",
    ),
    "two triggers": (
        """
        - name: r
          trigger:
            metric: {name: m, op: ">", threshold: 1}
            event: {type: health}
          action: {kind: scale, target: x}
        """,
        "rules[0].trigger",
        3,
        "a trigger needs exactly one of event, metric, absence (got metric and event)",
    ),
    "no trigger": (
        """
        - name: r
          trigger: {}
          action: {kind: scale, target: x}
        """,
        "rules[0].trigger",
        2,
        "a trigger needs exactly one of event, metric, absence (got none)",
    ),
    "bad op": (_metric(op="=>"), "rules[0].trigger.metric.op", 5, "op must be one of >, >=, <, <=, ==, !="),
    "infinite threshold": (
        _metric(threshold=".inf"),
        "rules[0].trigger.metric.threshold",
        6,
        "threshold must be a finite number",
    ),
    "threshold not a number": (
        _metric(threshold="lots"),
        "rules[0].trigger.metric.threshold",
        6,
        "threshold must be a finite number (got 'lots')",
    ),
    "threshold a boolean": (
        _metric(threshold="true"),
        "rules[0].trigger.metric.threshold",
        6,
        "threshold must be a finite number (got True)",
    ),
    "unknown agg": (
        _metric(agg="median"),
        "rules[0].trigger.metric.agg",
        7,
        "agg must be one of avg, max, min, rate",
    ),
    "zero window": (
        _metric(window_s="0"),
        "rules[0].trigger.metric.window_s",
        8,
        "window_s must be > 0 (got 0)",
    ),
    "empty name": (
        """
        - name: ""
          trigger: {event: {type: health}}
          action: {kind: scale, target: x}
        """,
        "rules[0].name",
        1,
        "name must not be empty",
    ),
    "name with capitals and spaces": (
        """
        - name: Redis Failover
          trigger: {event: {type: health}}
          action: {kind: scale, target: x}
        """,
        "rules[0].name",
        1,
        "name must be 1-100 of a-z 0-9 _ . - starting with a letter or digit (got 'Redis Failover')",
    ),
    "negative cooldown": (
        """
        - name: r
          trigger: {event: {type: health}}
          action: {kind: scale, target: x}
          cooldown_s: -5
        """,
        "rules[0].cooldown_s",
        4,
        "cooldown_s must be >= 0 (got -5)",
    ),
    "no concurrency": (
        """
        - name: r
          trigger: {event: {type: health}}
          action: {kind: scale, target: x}
          max_concurrency: 0
        """,
        "rules[0].max_concurrency",
        4,
        "max_concurrency must be >= 1 (got 0)",
    ),
    "unknown rule key": (
        """
        - name: r
          trigger: {event: {type: health}}
          action: {kind: scale, target: x}
          cooldown: 5
        """,
        "rules[0].cooldown",
        4,
        "unknown key 'cooldown'; allowed: name, description, trigger, action, cooldown_s, max_concurrency,",
    ),
    "unknown trigger key": (
        """
        - name: r
          trigger:
            event:
              type: health
              servce: redis
          action: {kind: scale, target: x}
        """,
        "rules[0].trigger.event.servce",
        5,
        "unknown key 'servce'; allowed: type, service, status, match, for_s",
    ),
    "target does not compile": (
        """
        - name: r
          trigger: {event: {type: health}}
          action:
            kind: failover
            target: "{{ event.service_name"
        """,
        "rules[0].action.target",
        5,
        "template does not compile: unexpected end of template",
    ),
    "param deep inside does not compile": (
        """
        - name: r
          trigger: {event: {type: health}}
          action:
            kind: haproxy.set_server
            target: x
            params:
              servers:
                - web1
                - "{% if %}"
        """,
        "rules[0].action.params.servers[1]",
        9,
        "template does not compile: Expected an expression",
    ),
    "missing target points at the action": (
        """
        - name: r
          trigger: {event: {type: health}}
          action:
            kind: drain
        """,
        "rules[0].action.target",
        4,
        "missing required key 'target'",
    ),
    "missing threshold": (
        """
        - name: r
          trigger:
            metric:
              name: m
              op: ">"
          action: {kind: scale, target: x}
        """,
        "rules[0].trigger.metric.threshold",
        4,
        "missing required key 'threshold'",
    ),
    "event held over a day": (
        """
        - name: r
          trigger: {event: {type: health, for_s: 90000}}
          action: {kind: scale, target: x}
        """,
        "rules[0].trigger.event.for_s",
        2,
        "for_s must be <= 86400 (got 90000)",
    ),
    "absence for no time": (
        """
        - name: r
          trigger:
            absence: {service: redis, for_s: 0}
          action: {kind: scale, target: x}
        """,
        "rules[0].trigger.absence.for_s",
        3,
        "for_s must be > 0 (got 0)",
    ),
    "quoted boolean": (
        """
        - name: r
          trigger: {event: {type: health}}
          action: {kind: scale, target: x}
          dry_run: "yes"
        """,
        "rules[0].dry_run",
        4,
        "dry_run must be true or false (got 'yes')",
    ),
    "metric tag not a string": (
        """
        - name: r
          trigger:
            metric:
              name: m
              tags: {port: 6379}
              op: ">"
              threshold: 1
          action: {kind: scale, target: x}
        """,
        "rules[0].trigger.metric.tags.port",
        5,
        "port must be a string (got 6379)",
    ),
    "rule that is not a mapping": (
        "- redis-failover\n",
        "rules[0]",
        1,
        "a rule must be a mapping (got 'redis-failover')",
    ),
    "second rule, under a rules key": (
        """
        rules:
          - name: ok
            trigger: {event: {type: health}}
            action: {kind: scale, target: x}
          - name: bad
            trigger: {event: {type: health}}
            action: {kind: scale, target: x, params: {n: 1}, when: now}
        """,
        "rules[1].action.when",
        7,
        "unknown key 'when'; allowed: kind, target, params",
    ),
    "top level not a list": (
        "name: r\n",
        "rules",
        1,
        "expected a list of rules, or a mapping with a 'rules' list",
    ),
    "rules not a list": ("rules: redis-failover\n", "rules", 1, "(got 'redis-failover')"),
    "extra top-level key": (
        "rules: []\nversion: 2\n",
        "version",
        2,
        "unknown top-level key 'version'; allowed: rules",
    ),
}


@pytest.mark.parametrize(("text", "path", "line", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_rule_is_refused_naming_where_and_why(text, path, line, message):
    problem = _only_problem(text)
    assert problem["path"] == path
    assert problem["line"] == line
    assert message in problem["message"]


def test_the_shipped_playbooks_parse():
    text, rules = load_default_rules()
    assert [r.name for r in rules] == [
        "redis-failover",
        "redis-rejoin",
        "cache-invalidate-on-data-change",
        "celery-scale-up",
        "celery-scale-up-on-wait",
        "celery-scale-down",
        "rabbitmq-dead-letters-arriving",
    ]
    dead = rules[6]  # alerts, never acts: a dry run whose replay names no queue
    assert (dead.dry_run, dead.action.kind, dead.action.params) == (True, "messaging.replay", {})
    assert (dead.trigger.metric.name, dead.trigger.metric.op, dead.trigger.metric.threshold) == (
        "coreplane_rabbitmq_dead_letter_per_second", ">", 0)  # fmt: skip
    failover = rules[0]
    assert failover.trigger.event.match == {"role": "primary"}
    assert (failover.action.kind, failover.cooldown_s, failover.max_concurrency) == ("failover", 30, 1)
    assert failover.trigger.event.type == "catalog.health"
    up, on_wait, down = (r.trigger.metric for r in rules[3:6])
    assert (up.agg, up.window_s, up.op, up.threshold, up.for_s) == ("avg", 10, ">", 50, 10)
    assert (on_wait.name, on_wait.tags, on_wait.op, on_wait.threshold) == (
        "coreplane_celery_task_wait_seconds", {"quantile": "0.95"}, ">", 10)  # fmt: skip
    assert (down.agg, down.window_s, down.op, down.threshold, down.for_s) == ("max", 60, "<", 1, 60)
    assert rules[4].action.params == {"op": "grow", "n": 1, "min": 1, "max": 4}
    assert rules[5].action.params == {"op": "shrink", "n": 1, "min": 1, "max": 4}
    assert "redis-failover" in text


def test_dumped_rules_parse_back_to_the_same_rules():
    _, rules = load_default_rules()
    stored = dump_rules(rules)
    assert "absence" not in stored[0]["trigger"]  # None is left out, so a stored rule stays readable
    assert parse_rules(yaml.safe_dump(stored)) == rules


def test_every_problem_in_a_document_is_reported_with_its_line():
    text = _yaml("""
        - name: a
          trigger: {event: {type: health}}
          action: {kind: scale, target: x}
          max_concurrency: 0
        - name: b
          trigger: {event: {type: health}}
          action: {kind: scael, target: x}
        """)
    with pytest.raises(RuleError) as caught:
        parse_rules(text)
    assert [(p["line"], p["path"]) for p in caught.value.problems] == [
        (4, "rules[0].max_concurrency"),
        (7, "rules[1].action.kind"),
    ]
    assert str(caught.value).splitlines() == [
        "line 4: rules[0].max_concurrency: max_concurrency must be >= 1 (got 0)",
        "line 7: rules[1].action.kind: unknown action kind 'scael'; known: " + ", ".join(sorted(KNOWN_KINDS)),
    ]


def test_a_duplicate_name_points_at_both_rules():
    text = _yaml("""
        - name: same
          trigger: {event: {type: health}}
          action: {kind: scale, target: x}
        - name: other
          trigger: {event: {type: health}}
          action: {kind: scale, target: x}
        - name: same
          trigger: {event: {type: health}}
          action: {kind: drain, target: y}
        """)
    problem = _only_problem(text)
    assert problem == {
        "line": 7,
        "path": "rules[2].name",
        "message": "duplicate rule name 'same' (first at line 1)",
    }


def test_a_yaml_syntax_error_gives_its_line():
    text = "- name: r\n  trigger: {event: {type: health}\n  action: {kind: scale, target: x}\n"
    problem = _only_problem(text)
    assert problem["line"] == 3
    assert problem["path"] == ""
    assert problem["message"].startswith("YAML syntax error: ")


def test_an_empty_document_is_no_rules():
    assert parse_rules("") == []
    assert parse_rules("rules: []\n") == []


def test_any_service_has_one_spelling():
    rules = parse_rules(
        _yaml("""
        - name: r
          trigger: {event: {type: health, service: "*"}}
          action: {kind: scale, target: x}
        """)
    )
    assert rules[0].trigger.event.service is None


EVENT = {
    "service_name": "redis",
    "details": {"instance": "10.0.0.5:6379", "tags": ["users", "carts"], "n": "1"},
}


def test_render_fills_templates_nested_in_params():
    params = {
        "instance": "{{ event.details.instance }}",
        "steps": [{"note": "fail over {{ event.service_name }}"}],
        "n": 3,
    }
    assert render(params, {"event": EVENT}) == {
        "instance": "10.0.0.5:6379",
        "steps": [{"note": "fail over redis"}],
        "n": 3,
    }


def test_a_single_expression_keeps_its_type():
    assert render("{{ event.details.tags }}", {"event": EVENT}) == ["users", "carts"]
    assert (
        render("{{ event.details.n }}", {"event": EVENT}) == "1"
    )  # a string that looks like a number stays one
    assert render("{{ event.details.tags | length }}", {"event": EVENT}) == 2
    assert render("tags: {{ event.details.tags | join(',') }}", {"event": EVENT}) == "tags: users,carts"


def test_the_shipped_invalidation_passes_the_tag_list_through():
    _, rules = load_default_rules()
    invalidate = next(r for r in rules if r.action.kind == "cache.invalidate")
    assert render(invalidate.action.params, {"event": EVENT}) == {"tags": ["users", "carts"]}


@pytest.mark.parametrize(
    "template", ["{{ event.details.role }}", "role {{ event.details.role }}", "{{ event.details.role.name }}"]
)
def test_an_undefined_name_is_a_rule_error_naming_rule_and_field(template):
    with pytest.raises(RuleError) as caught:
        render({"role": template}, {"event": EVENT}, rule="redis-failover", path="action.params")
    (problem,) = caught.value.problems
    assert problem["path"] == "action.params.role"
    assert "rule 'redis-failover'" in problem["message"]
    assert "has no attribute 'role'" in problem["message"]


def test_templates_cannot_reach_outside_the_sandbox():
    with pytest.raises(RuleError, match="unsafe"):
        render("{{ event.__class__.__mro__ }}", {"event": EVENT}, rule="r", path="action.target")
