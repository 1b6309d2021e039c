"""alerts/: the rule files pass `promtool check rules`, their unit tests pass `promtool test
rules`, alertmanager.yml passes `amtool check-config`; every alert has a firing and a quiet
promtool case; every metric a rule reads is one an agent collector or the control plane
produces, so renaming a figure breaks this test rather than silently muting an alert."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from agents.collectors.registry import COLLECTORS

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "alerts"
RULE_FILES = sorted((ALERTS / "rules").glob("*.yml"))
TEST_FILES = sorted((ALERTS / "tests").glob("*.yml"))
# Series Prometheus makes itself for every scrape target.
PROMETHEUS_OWN = {"up"}
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                "bool", "offset", "inf", "nan"}  # fmt: skip


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `scripts/services.sh up prometheus alertmanager` installs it")
    return path


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"


def _rules() -> list[dict]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def test_the_alerts_folder_has_rules_and_tests():
    assert RULE_FILES and TEST_FILES, f"no rule or test files under {ALERTS}"


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_file_passes_promtool_check(path: Path):
    _run(_tool("promtool"), "check", "rules", str(path))


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_rule_unit_tests_pass(path: Path):
    _run(_tool("promtool"), "test", "rules", str(path))  # rule_files: relative to the test file


def test_every_rule_file_is_under_test():
    tested = {
        (path.parent / rule_file).resolve()
        for path in TEST_FILES
        for rule_file in yaml.safe_load(path.read_text())["rule_files"]
    }
    assert {p.resolve() for p in RULE_FILES} <= tested, "a rule file no test file loads"
    assert tested <= {p.resolve() for p in RULE_FILES}, "a test loads a rule file outside alerts/rules"


def test_every_alert_has_a_firing_and_a_quiet_case():
    firing, quiet = set(), set()
    for path in TEST_FILES:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = set(_alerts())
    assert not alerts - firing, f"alerts with no case where they fire: {sorted(alerts - firing)}"
    assert not alerts - quiet, f"alerts with no case where they stay quiet: {sorted(alerts - quiet)}"
    assert not (firing | quiet) - alerts, (
        f"cases for alerts no rule defines: {sorted((firing | quiet) - alerts)}"
    )


def test_every_alert_says_how_bad_what_and_why():
    for name, rule in _alerts().items():
        assert rule.get("for"), f"{name}: no `for`, one bad scrape would page"
        assert rule.get("labels", {}).get("severity") in {"critical", "warning"}, name
        annotations = rule.get("annotations", {})
        assert "{{" in annotations.get("summary", ""), f"{name}: summary does not name what fails"
        assert len(annotations.get("description", "")) > 80, f"{name}: description gives no hint"


# --- metric names -------------------------------------------------------------------------


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (not functions, labels or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w:.])[a-zA-Z_:][\w:]*", expr):
        if match.group() not in PROMQL_WORDS and not expr[match.end() :].lstrip().startswith("("):
            names.add(match.group())
    return names


def test_metric_names_reads_a_promql_expression():
    expr = (
        'sum by (job, kind) (rate(a_total{state="x{y}"}[5m])) > 1e3 unless on (service) b == bool c offset 5m'
    )
    assert metric_names(expr) == {"a_total", "b", "c"}


def _names_in(path: Path, fillers: set[str]) -> set[str]:
    """coreplane_* names a Python file writes: literals, and f-strings such as
    f"coreplane_cache_{metric}" filled with the file's own strings (plus ``fillers``)."""
    tree = ast.parse(path.read_text())
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    names = {s for s in strings if re.fullmatch(r"coreplane_\w+", s)}
    words = {s for s in strings if re.fullmatch(r"[a-z0-9_]+", s)} | fillers
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and len(node.values) in (2, 3):
            head, tail = node.values[0], node.values[2] if len(node.values) == 3 else None
            if not (isinstance(head, ast.Constant) and str(head.value).startswith("coreplane_")):
                continue
            suffix = tail.value if isinstance(tail, ast.Constant) else ""
            names |= {f"{head.value}{word}{suffix}" for word in words}
    return names


def _produced() -> set[str]:
    kinds = set(COLLECTORS)
    agents = set()
    for path in [*(ROOT / "agents" / "collectors").glob("*.py"), ROOT / "agents" / "runtime.py"]:
        agents |= _names_in(path, kinds)
    control_plane = set()
    for path in (ROOT / "controlplane").rglob("*.py"):
        if "prometheus_client" in path.read_text():  # the modules that expose metrics
            control_plane |= _names_in(path, set())
    # prometheus-client appends these to counter and histogram family names.
    suffixed = {f"{n}{s}" for n in control_plane for s in ("_total", "_bucket", "_count", "_sum")}
    return agents | control_plane | suffixed | PROMETHEUS_OWN


def test_every_metric_a_rule_reads_is_produced():
    produced = _produced()
    assert {"coreplane_redis_up", "coreplane_cache_hits_total", "coreplane_leader"} <= produced
    unknown = {
        f"{rule.get('alert') or rule.get('record')}: {name}"
        for rule in _rules()
        for name in metric_names(str(rule["expr"]))
        if name not in produced
    }
    assert not unknown, (
        "rules read series nothing produces (renamed in agents/collectors or controlplane?):\n  "
        + "\n  ".join(sorted(unknown))
    )


# --- alertmanager.yml ---------------------------------------------------------------------


def test_alertmanager_config_passes_amtool(tmp_path: Path):
    # Rendered as shipped, next to the token file it names (resolved from its directory).
    config = yaml.safe_load((ALERTS / "alertmanager.yml").read_text())
    shutil.copy(ALERTS / "alertmanager.yml", tmp_path / "alertmanager.yml")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            token = tmp_path / hook["http_config"]["authorization"]["credentials_file"]
            token.parent.mkdir(parents=True, exist_ok=True)
            token.write_text("test-token\n")
    _run(_tool("amtool"), "check-config", str(tmp_path / "alertmanager.yml"))


def test_alertmanager_sends_everything_to_the_webhook_with_a_token_file():
    config = yaml.safe_load((ALERTS / "alertmanager.yml").read_text())
    route = config["route"]
    assert route["receiver"] == "coreplane" and not route.get("routes"), "every alert to coreplane"
    assert set(route["group_by"]) == {"alertname", "service", "instance"}
    (receiver,) = [r for r in config["receivers"] if r["name"] == "coreplane"]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"].endswith("/api/v1/webhooks/alertmanager")
    assert hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth.get("type", "Bearer") == "Bearer" and auth["credentials_file"]
    assert "credentials" not in auth, "the token must come from a file, never inline"
    (inhibit,) = config["inhibit_rules"]
    assert inhibit["source_matchers"] == ['severity="critical"']
    assert inhibit["target_matchers"] == ['severity="warning"']
    assert set(inhibit["equal"]) == {"service", "instance"}
