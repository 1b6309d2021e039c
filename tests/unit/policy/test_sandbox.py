"""Rules cannot be used to stall the server: costly templates and YAML are refused promptly, when
saved (their constant parts) or when rendered (the rest), with a message saying what and the limit;
a stored document that no longer validates, and a long preview, are bounded too."""

import time
from datetime import datetime, timedelta

import pytest

from controlplane.policy import sandbox
from controlplane.policy.engine import Firing, PolicyEngine
from controlplane.policy.preview import decide
from controlplane.policy.rules import MAX_DEPTH, MAX_DOCUMENT, RuleError, parse_rules, render

PROMPT_S = 1.0  # the old code took 2.2 s (`**`) and 4.8 s (aliases) on an idle machine
EVENT = {"service_name": "redis", "details": {"s": "abc", "n": 3, "tags": ["a", "b"]}}


def rule_with_target(target: str) -> str:
    return (
        "- name: r\n  trigger: {absence: {service: shop, for_s: 60}}\n"
        f"  action: {{kind: scale, target: {target!r}}}\n"  # single-quoted YAML keeps the template as is
    )


def alias_bomb(levels: int = 5) -> str:
    """The "billion laughs" in a rule's params: each level repeats the one before nine times."""
    lines = ['      l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"      l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    head = (
        "- name: r\n  trigger: {event: {type: x}}\n  action:\n    kind: scale\n    target: t\n    params:\n"
    )
    return head + "\n".join(lines) + "\n"


def refused(text: str) -> dict:
    """The one problem of a refused document, refused within PROMPT_S."""
    started = time.monotonic()
    with pytest.raises(RuleError) as caught:
        parse_rules(text)
    assert time.monotonic() - started < PROMPT_S
    (problem,) = caught.value.problems
    return problem


def render_refused(template: str) -> str:
    started = time.monotonic()
    with pytest.raises(RuleError) as caught:
        render(template, {"event": EVENT}, rule="r", path="action.target")
    assert time.monotonic() - started < PROMPT_S
    return str(caught.value)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{{ (9**(9**7)) > 1 }}", "`**` would make a number of about 19,131,876 bits (at most 4,096)"),
        ("{{ ' ' * 10**9 }}", "`*` would make about 1,000,000,000 characters or items (at most 10,000)"),
        ("{{ [0] * 10**9 }}", "`*` would make about 1,000,000,000 characters or items"),
        ("{{ range(10**9) | list }}", "range() would make about 1,000,000,000 characters or items"),
        ("{{ range(10**100) }}", "range() would make"),
        ("{{ 'x' | center(10**9) }}", "center would make about 1,000,000,000"),
        ("{{ '%999999999d' % 1 }}", "a % format's width would make"),
        (
            "{% for i in range(9) %}{% for j in range(9) %}x{% endfor %}{% endfor %}",
            "{% for %} is not allowed",
        ),
        ("{% set a = 'x' %}{{ a }}", "{% set %} is not allowed"),
        ("{% macro m() %}{% endmacro %}", "{% macro %} is not allowed"),
        ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "nested too deeply"),
    ],
)
def test_a_costly_template_is_refused_when_saved_saying_what_and_the_limit(target, message):
    problem = refused(rule_with_target(target))
    assert problem["path"] == "rules[0].action.target"
    assert problem["line"] == 3
    assert message in problem["message"]


def test_a_yaml_alias_bomb_is_refused_at_its_first_anchor():
    text = alias_bomb()
    assert len(text) < 600
    problem = refused(text)
    assert problem["line"] == 7
    assert "anchors and aliases (&name, *name) are not allowed" in problem["message"]


@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1b"])
def test_a_control_character_is_refused_with_its_line(character):
    problem = refused(f"- name: r\n  description: bell{character}\n  trigger: {{event: {{type: x}}}}\n")
    assert problem["line"] == 2
    assert f"control character U+{ord(character):04X} is not allowed" in problem["message"]


def test_a_control_character_written_as_an_escape_is_refused_in_a_template():
    problem = refused('- name: r\n  trigger: {event: {type: x}}\n  action: {kind: scale, target: "a\\0b"}\n')
    assert problem["line"] == 3
    assert "control character U+0000 in a template" in problem["message"]


def test_a_document_over_the_size_limit_is_refused_before_it_is_parsed():
    problem = refused("#" * (MAX_DOCUMENT + 1))
    assert problem["message"] == f"the document is {MAX_DOCUMENT + 1:,} characters; at most {MAX_DOCUMENT:,}"


@pytest.mark.parametrize(
    "text", ["[" * 100_000 + "]" * 100_000, "".join(" " * i + "- \n" for i in range(MAX_DEPTH + 5))]
)
def test_deep_nesting_is_refused(text):
    assert "nest" in refused(text)["message"]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 9 ** (event.details.n * 10**6) }}", "`**` would make a number of about 12,000,000 bits"),
        ("{{ event.details.s * 10**9 }}", "`*` would make about 3,000,000,000"),
        ("{{ event.details.tags * 10**9 }}", "`*` would make about 4,000,000,000"),
        ("{{ event.details.s | replace('', 'x' * 5000) }}", "replace would make about 20,003"),
        ("{{ range(5000) | map('string') | join(' ' * 5000) }}", "join would make about"),
        ("{{ event.details.s | indent(10**9) }}", "indent would make about"),
        ("{{ event.details.s | batch(10**9, 0) | list }}", "batch with linecount=1000000000"),
        ("{{ ([[0]] * 5000) | sum(start=[]) }}", "sum adds numbers"),
        ("{{ event.details.s.ljust(10**9) }}", "the str method 'ljust' is not allowed: use the ljust filter"),
        ("{{ '{:>999999999}'.format(1) }}", "the str method 'format' is not allowed"),
        ("{{ lipsum(10**9) }}", "'lipsum' is undefined"),
        ("{{ event.details.s * 3000 }}{{ event.details.s * 3000 }}", "the result is over 10,000 characters"),
    ],
)
def test_a_costly_operation_is_refused_when_rendered(template, message):
    assert message in render_refused(template)


def test_many_allowed_operations_run_out_of_the_render_budget():
    one = "((' ' * 9000) | length)"  # fast: the work budget runs out before the deadline
    assert "the template does too much work" in render_refused("{{ " + " + ".join([one] * 40) + " }}")


def test_a_render_past_its_deadline_is_abandoned():
    with pytest.raises(sandbox.SandboxLimit, match=r"rendering took over 0 s"), sandbox.budget(seconds=0):
        sandbox.spend()


def test_ordinary_templates_still_render():
    context = {"event": EVENT}
    assert render("{{ event.details.n * 2 ** 10 }}", context) == 3072
    assert render("{{ '%s-%03d' % (event.service_name, event.details.n) }}", context) == "redis-003"
    assert render("{{ '%s:%s' | format(event.service_name, 6379) }}", context) == "redis:6379"
    assert render("{{ event.details.tags | join(',') | upper }}", context) == "A,B"
    assert render("{{ event.details.s | replace('b', 'x') | center(7) }}", context) == "  axc  "
    assert render("{{ event.details.tags + ['c'] }}", context) == ["a", "b", "c"]
    assert render("{% if event.details.n > 2 %}many{% else %}few{% endif %}", context) == "many"
    assert render("{{ range(3) | sum }}", context) == 3


def test_a_preview_past_its_deadline_stops_with_a_limit_row():
    rule = parse_rules(rule_with_target("{{ service }}"))[0]
    t0 = datetime(2026, 1, 1)
    moments = [(t0 + timedelta(seconds=s), [Firing({"service": "shop"}, "quiet")]) for s in (0, 15, 30)]
    rows = list(decide(rule, moments, engine=PolicyEngine(), deadline=time.monotonic() - 1))
    assert [(r.outcome, r.why) for r in rows] == [("limit", "stops here: the preview ran out of time")]
