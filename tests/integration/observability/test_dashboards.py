"""dashboards/: the committed JSON is sound for Grafana (unique uids, known data sources,
defined variables); against the real estate (conftest.py) every Prometheus expression
returns data, with the variables set to the label values Prometheus really has, and every
SQL query returns rows from the store. That the JSON is what dashboards/build.py writes is
tests/unit/test_dashboards_json.py's check."""

from __future__ import annotations

import json
import math
import re
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import yaml

from controlplane.store.db import make_engine
from tests.support.processes import free_port
from tests.support.services import ROOT
from tests.support.timing import until

DASHBOARDS = ROOT / "dashboards"
EXPECTED = {"overview", "control-plane", "tasks", "messaging", "realtime", "storage", "search", "cache",
            "queues", "mesh", "load-balancer"}  # fmt: skip
# Grafana's own names, not dashboard variables.
BUILTIN = re.compile(r"^__(timeFilter|timeGroupAlias|timeGroup|interval|rate_interval|range|all)")
VARIABLE = re.compile(r"\$\{?(\w+)")
WAIT_S = 120

# Expressions that may have no data in this estate, and why. Keep it short: a panel that
# never shows anything here is more likely wrong than idle.
MAY_BE_EMPTY: dict[str, str] = {}


def committed() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((DASHBOARDS / "json").glob("*.json"))}


def targets(dashboard: dict, datasource_uid: str) -> list[dict]:
    return [t for p in dashboard["panels"] for t in p["targets"] if t["datasource"]["uid"] == datasource_uid]


def test_dashboards_are_structurally_valid():
    dashboards = committed()
    assert set(dashboards) == EXPECTED
    provisioning = yaml.safe_load((DASHBOARDS / "provisioning" / "datasources.yml").read_text())
    sources = {d["uid"]: d["type"] for d in provisioning["datasources"]}
    folders = yaml.safe_load((DASHBOARDS / "provisioning" / "dashboards.yml").read_text())["providers"]
    assert [f["folder"] for f in folders] == ["coreplane"]
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids) and all(len(uid) <= 40 for uid in uids)
    assert len({d["title"] for d in dashboards.values()}) == len(dashboards)
    for name, d in dashboards.items():
        defined = [v["name"] for v in d["templating"]["list"]]
        assert "instance" in defined and len(set(defined)) == len(defined), name
        ids = [p["id"] for p in d["panels"]]
        assert len(set(ids)) == len(ids), name
        for v in d["templating"]["list"]:
            assert sources[v["datasource"]["uid"]] == v["datasource"]["type"] == "prometheus", name
            assert re.fullmatch(r"label_values\((.+), (\w+)\)", v["query"]), v["query"]
        cells = set()
        for p in d["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, f"{name}: {p['title']} is wider than the grid"
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, f"{name}: {p['title']} overlaps another panel"
            cells |= mine
            for ref in (p["datasource"], *(t["datasource"] for t in p["targets"])):
                assert sources.get(ref["uid"]) == ref["type"], f"{name}: {p['title']} uses unknown {ref}"
            for t in p["targets"]:
                text = t.get("expr") or t.get("rawSql")
                assert text, f"{name}: {p['title']} has an empty query"
                for used in VARIABLE.findall(
                    text + " " + " ".join(v["query"] for v in d["templating"]["list"])
                ):
                    assert BUILTIN.match(used) or used in defined, f"{name}: ${used} is not a variable"
    stale = [expr for expr in MAY_BE_EMPTY if not any(
        expr == t["expr"] for d in dashboards.values() for t in targets(d, "prometheus"))]  # fmt: skip
    assert not stale, f"MAY_BE_EMPTY names expressions no dashboard uses: {stale}"


# --- against the estate -----------------------------------------------------------------


def regex_of(values: list[str]) -> str:
    """A multi-value variable as Grafana writes it into PromQL: (a|b), regex-escaped, inside
    a double-quoted string (so each escaping backslash is doubled)."""
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", v) for v in values]
    return "(" + "|".join(escaped) + ")"


def substitute(text: str, values: dict[str, list[str]], quote) -> str:  # type: ignore[no-untyped-def]
    for name in sorted(values, key=len, reverse=True):
        text = text.replace(f"${{{name}}}", quote(values[name])).replace(f"${name}", quote(values[name]))
    return text


def label_values(prometheus: str, query: str, known: dict[str, list[str]]) -> list[str]:
    """A `label_values(selector, label)` variable, resolved like Grafana does."""
    selector, label = re.fullmatch(r"label_values\((.+), (\w+)\)", query).groups()
    answer = httpx.get(f"{prometheus}/api/v1/label/{label}/values",
                       params={"match[]": substitute(selector, known, regex_of)}, timeout=10).json()  # fmt: skip
    return answer["data"]


def variable_values(prometheus: str, dashboard: dict) -> dict[str, list[str]]:
    """Every variable of ``dashboard`` at "All", in order (instance depends on service)."""
    values: dict[str, list[str]] = {}
    for v in dashboard["templating"]["list"]:
        values[v["name"]] = label_values(prometheus, v["query"], values)
    return values


def has_data(estate, expr: str) -> bool:  # type: ignore[no-untyped-def]
    return any(not math.isnan(float(r["value"][1])) for r in estate.query(expr))


def _without_data(estate) -> tuple[dict[str, str], int]:  # type: ignore[no-untyped-def]
    """(expression or variable -> why it has no data, how many expressions were checked)."""
    missing, checked = {}, 0
    for name, d in committed().items():
        values = variable_values(estate.prometheus, d)
        missing |= {f"{name}: ${var}": "the variable has no value" for var, vs in values.items() if not vs}
        for t in targets(d, "prometheus"):
            if t["expr"] in MAY_BE_EMPTY or not all(values.values()):
                continue
            checked += 1
            if not has_data(estate, substitute(t["expr"], values, regex_of)):
                missing[f"{name}: {t['expr']}"] = "no data"
    return missing, checked


def test_every_prometheus_expression_returns_data(estate):
    expected = sum(len(targets(d, "prometheus")) for d in committed().values()) - len(MAY_BE_EMPTY)
    last: list = []

    def all_with_data() -> bool:
        last[:] = _without_data(estate)
        return not last[0]

    until("every expression to return data", all_with_data, WAIT_S, every_s=5,
          logs=lambda: "\n".join(f"  {k} ({v})" for k, v in last[0].items()))  # fmt: skip
    missing, checked = last
    assert not missing, "expressions without data:\n" + "\n".join(f"  {k} ({v})" for k, v in missing.items())
    assert checked == expected > 80


def grafana_sql(text: str, values: dict[str, list[str]], start: datetime, end: datetime) -> str:
    """The SQL Grafana's PostgreSQL data source sends for ``text``: its macros expanded, a
    multi-value variable as a quoted list."""

    def group(m: re.Match) -> str:
        unit = {"s": 1, "m": 60, "h": 3600}[m.group(3)]
        step = int(m.group(2)) * unit
        return f'floor(extract(epoch from {m.group(1)})/{step})*{step} AS "time"'

    text = re.sub(r"\$__timeGroupAlias\((\w+), '(\d+)([smh])'\)", group, text)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    text = re.sub(r"\$__timeFilter\((\w+)\)",
                  lambda m: f"{m.group(1)} BETWEEN '{start:{iso}}' AND '{end:{iso}}'", text)  # fmt: skip
    text = substitute(text, values, lambda vs: ",".join("'" + v.replace("'", "''") + "'" for v in vs))
    assert "$" not in text, f"unexpanded macro or variable in {text}"
    return text


def _without_rows(estate, engine) -> tuple[dict[str, str], int]:  # type: ignore[no-untyped-def]
    """(SQL panel -> the query it ran, when it gave no rows; how many queries ran)."""
    empty, ran = {}, 0
    end = datetime.now(UTC).replace(tzinfo=None)
    for name, d in committed().items():
        values = variable_values(estate.prometheus, d)
        for t in targets(d, "coreplane-store"):
            query = grafana_sql(t["rawSql"], values, end - timedelta(hours=1), end)
            with engine.connect() as conn:  # psycopg itself: no placeholder parsing
                rows = conn.connection.driver_connection.execute(query).fetchall()
            ran += 1
            if not rows:
                empty[f"{name}: {t['rawSql']}"] = query
    return empty, ran


def test_every_sql_query_returns_rows(estate):
    engine = make_engine(estate.database_url)
    expected = sum(len(targets(d, "coreplane-store")) for d in committed().values())
    last: list = []

    def all_with_rows() -> bool:
        last[:] = _without_rows(estate, engine)
        return not last[0]

    try:
        until("every SQL panel to return rows", all_with_rows, WAIT_S, every_s=5,
              logs=lambda: "\n".join(f"  {k}\n    ran: {v}" for k, v in last[0].items()))  # fmt: skip
    finally:
        engine.dispose()
    empty, ran = last
    assert not empty, "SQL panels without rows:\n" + "\n".join(
        f"  {k}\n    ran: {v}" for k, v in empty.items()
    )
    assert ran == expected > 15


def test_push_says_plainly_what_is_wrong(tmp_path):
    """`coreplane dashboards push` against a port where nothing listens, and with a folder
    holding a dashboard without uid (no Grafana can be installed here: see
    docs/observability.md)."""

    def push(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(ROOT / ".venv" / "bin" / "coreplane"), "dashboards", "push", *args],
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    nowhere = f"http://127.0.0.1:{free_port()}"
    done = push("--grafana-url", nowhere, "--token", "t")
    assert done.returncode == 1 and f"cannot reach Grafana at {nowhere}" in done.stderr, done.stderr
    (tmp_path / "mine.json").write_text(json.dumps({"title": "no uid"}))
    done = push("--grafana-url", nowhere, "--token", "t", "--path", str(tmp_path))
    assert done.returncode == 1 and "mine.json has no uid" in done.stderr, done.stderr
