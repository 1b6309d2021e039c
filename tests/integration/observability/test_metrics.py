"""The control plane's /metrics on a real `coreplane serve`, and the shipped Prometheus
configuration: promtool accepts it, and a real Prometheus started from it scrapes the
control plane, its /metrics/backends and the exporters the catalog discovers."""

from __future__ import annotations

import re
import subprocess

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from controlplane.store.migrate import upgrade
from tests.integration.observability.conftest import PROBE_RULES, SHIPPED_CONFIG, render_config
from tests.support.console import console_login
from tests.support.services import ROOT
from tests.support.timing import until

NEW_FAMILIES = (
    "coreplane_actions",
    "coreplane_policy_evaluations",
    "coreplane_leader",
    "coreplane_console_websockets",
    "coreplane_db_pool_checked_out",
    "coreplane_db_pool_size",
    "coreplane_metrics_query_duration_seconds",
)


def scrape(url: str) -> dict[str, list]:
    """Family name -> its samples, from a real GET /metrics (no credential)."""
    answer = httpx.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(answer.text)}


def value(url: str, sample: str, **labels: str) -> float | None:
    for samples in scrape(url).values():
        for s in samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_metrics_exposes_the_control_planes_own_figures(control_plane_sqlite):
    url, token, _ = control_plane_sqlite
    admin = {"Authorization": f"Bearer {token}"}
    families = scrape(url)
    for name in (*NEW_FAMILIES[2:], "coreplane_ingest_batches", "coreplane_ingest_duration_seconds"):
        assert name in families, f"/metrics lacks {name}"
    assert value(url, "coreplane_leader") == 1  # one process on SQLite: it leads
    size, in_use = value(url, "coreplane_db_pool_size"), value(url, "coreplane_db_pool_checked_out")
    assert size == 5 and 0 <= in_use <= size + 10  # SQLAlchemy's QueuePool: 5, overflow 10

    # A console websocket open on the server counts; closed, it no longer does.
    assert value(url, "coreplane_console_websockets") == 0
    viewer, _ = console_login(url, token=token)
    cookie = "; ".join(f"{k}={v}" for k, v in viewer.cookies.items())
    ws_url = url.replace("http", "ws") + "/ws/console?page=overview"
    with connect(ws_url, additional_headers={"Cookie": cookie, "Origin": url}) as ws:
        assert 'id="' in ws.recv(timeout=10)  # the catch-up push: the socket is registered
        assert value(url, "coreplane_console_websockets") == 1
    until("the websocket count back at 0", lambda: value(url, "coreplane_console_websockets") == 0)

    # A range query is timed, under the source it read.
    before = value(url, "coreplane_metrics_query_duration_seconds_count", source="raw") or 0
    answer = httpx.get(f"{url}/api/v1/metrics", headers=admin, params={"metric_type": "x", "source": "raw"})
    assert answer.status_code == 200, answer.text
    assert value(url, "coreplane_metrics_query_duration_seconds_count", source="raw") == before + 1

    # Each move of an action counts once, under its kind and the state it entered. Nothing
    # watches the target, so the plan fails it.
    action = {"kind": "cache.invalidate", "target": "nowhere", "params": {"keys": ["k"]}}
    assert httpx.post(f"{url}/api/v1/actions", headers=admin, json=action).status_code == 201
    until("the action counted as pending and failed", lambda: (
        value(url, "coreplane_actions_total", kind="cache.invalidate", state="pending") == 1
        and value(url, "coreplane_actions_total", kind="cache.invalidate", state="failed") == 1))  # fmt: skip

    # A rule the engine evaluates: an absence that always holds, in dry run.
    put = httpx.put(f"{url}/api/v1/rules", headers=admin, json={"version": 0, "yaml": PROBE_RULES})
    assert put.status_code == 200, put.text
    until("a recorded dry-run evaluation", lambda: (
        value(url, "coreplane_policy_evaluations_total", rule="telemetry-probe", outcome="dry_run") or 0) >= 1)  # fmt: skip


def test_two_apps_in_one_process_each_serve_their_own_metrics(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from controlplane.app import create_app
    from controlplane.settings import load_settings

    url = f"sqlite:///{tmp_path}/store.db"
    upgrade(url)
    monkeypatch.setenv("COREPLANE_DATABASE_URL", url)
    monkeypatch.setenv("COREPLANE_ADMIN_TOKEN", "two-apps-admin-token")
    first, second = create_app(load_settings()), create_app(load_settings())  # no "Duplicated timeseries"
    second.state.control.leadership.is_leader = False  # as a follower would be
    answers = [TestClient(app).get("/metrics").text for app in (first, second)]
    leader = [re.search(r"^coreplane_leader (\S+)$", text, re.M).group(1) for text in answers]
    assert leader == ["1.0", "0.0"]
    for app in (first, second):
        app.state.engine.dispose()


def _promtool_check(config_path, *options: str) -> str:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        ["promtool", "check", "config", *options, str(config_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_the_shipped_prometheus_config_passes_promtool(tmp_path):
    import yaml

    shipped = yaml.safe_load(SHIPPED_CONFIG.read_text())
    for pattern in shipped["rule_files"]:  # a glob matching nothing would pass promtool silently
        matched = sorted((SHIPPED_CONFIG.parent).glob(pattern))
        assert matched, f"rule_files pattern {pattern!r} matches no file in alerts/"
        assert not [p for p in matched if p.name.endswith(".test.yml")], (
            "a promtool test file is not a rule file"
        )
    # As shipped, its token file is a placeholder path: the syntax only. Rendered below, with
    # a real token file, everything (rule files included).
    assert "SUCCESS" in _promtool_check(SHIPPED_CONFIG, "--syntax-only")
    (tmp_path / "token").write_text("a-viewer-token\n")
    rendered = tmp_path / "prometheus.yml"
    rendered.write_text(render_config(control_plane="127.0.0.1:8000", alertmanager="127.0.0.1:9093",
                                      token_file=tmp_path / "token", rules_root=ROOT / "alerts"))  # fmt: skip
    out = _promtool_check(rendered)
    assert (
        f"SUCCESS: {sum(len(list(ROOT.joinpath('alerts').glob(p))) for p in shipped['rule_files'])} rule files"
        in out
    )


def test_prometheus_scrapes_the_control_plane_and_discovers_the_catalog(estate, services):
    def up() -> dict[tuple[str, str], str]:
        return {(r["metric"]["job"], r["metric"].get("coreplane_service", "")): r["value"][1]
                for r in estate.query("up")}  # fmt: skip

    expected = {
        ("coreplane", ""): "1",
        ("coreplane-backends", ""): "1",
        ("coreplane-catalog", "haproxy-exporter"): "1",
    }
    until(f"up to be {expected}", lambda: up() == expected, 60, every_s=1, logs=lambda: f"up is {up()}")
    # The exporter registered in the catalog is scraped with the catalog's labels.
    assert estate.query('haproxy_process_nbthread{job="coreplane-catalog", coreplane_kind="exporter"}')
    # The other instances were discovered (through the viewer token) but not scraped.
    targets = httpx.get(f"{estate.prometheus}/api/v1/targets", params={"state": "dropped"}).json()["data"]
    dropped = {t["discoveredLabels"].get("coreplane_kind") for t in targets["droppedTargets"]}
    assert {"redis", "postgres", "rabbitmq"} <= dropped, dropped

    # The control plane's figures, per process; the backends' under their own instance.
    assert [r["value"][1] for r in estate.query('coreplane_leader{job="coreplane"}')] == ["1"]
    redis_up = until("coreplane_redis_up", lambda: estate.query(
        'coreplane_redis_up{job="coreplane-backends", service="redis"}'))  # fmt: skip
    primary = httpx.URL(services.redis.url).netloc.decode()
    assert primary in {r["metric"]["instance"] for r in redis_up}, redis_up  # honor_labels kept it

    # Rules loaded from alerts/rules, alerts sent to the Alertmanager of var/services.env.
    groups = httpx.get(f"{estate.prometheus}/api/v1/rules").json()["data"]["groups"]
    loaded = {g["file"] for g in groups}
    assert loaded == {str(p) for p in ROOT.joinpath("alerts").glob("rules/*.yml")}, (
        "a rule file is not loaded"
    )
    managers = until("the Alertmanager", lambda: httpx.get(
        f"{estate.prometheus}/api/v1/alertmanagers").json()["data"]["activeAlertmanagers"])  # fmt: skip
    assert managers[0]["url"].endswith("/api/v2/alerts")
