"""One Prometheus configuration (alerts/prometheus.yml) and one Alertmanager configuration
(alerts/alertmanager.yml): the local harness runs them with its addresses filled in, and
docker-compose.yml derives its own from them with the commands it runs (replayed here with
the container paths mapped to the repository and a temporary folder: there is no Docker)."""

import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_PROMETHEUS = yaml.safe_load((ROOT / "alerts" / "prometheus.yml").read_text())
SHIPPED_ALERTMANAGER = yaml.safe_load((ROOT / "alerts" / "alertmanager.yml").read_text())
HARNESS_EXPORTERS = ["prometheus", "haproxy", "rabbitmq"]  # scripts/services/prometheus.sh
COMPOSE_EXPORTERS = ["haproxy", "rabbitmq"]


def _jobs(config: dict) -> list[str]:
    return [job["job_name"] for job in config["scrape_configs"]]


def _rule_groups() -> set[str]:
    files = [p for pattern in SHIPPED_PROMETHEUS["rule_files"] for p in (ROOT / "alerts").glob(pattern)]
    return {group["name"] for path in files for group in yaml.safe_load(path.read_text())["groups"]}


def test_the_harness_prometheus_runs_the_shipped_configuration(services):
    assert services.prometheus.url, "prometheus is not in var/services.env"
    api = f"{services.prometheus.url}/api/v1"
    running = yaml.safe_load(httpx.get(f"{api}/status/config", timeout=10).json()["data"]["yaml"])
    assert _jobs(running) == _jobs(SHIPPED_PROMETHEUS) + HARNESS_EXPORTERS
    loaded = {group["name"] for group in httpx.get(f"{api}/rules", timeout=10).json()["data"]["groups"]}
    assert loaded == _rule_groups()
    managers = [
        t for am in running["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]
    ]
    assert managers == [httpx.URL(services.alertmanager.url).netloc.decode()]


def test_the_harness_alertmanager_runs_the_shipped_configuration(services):
    assert services.alertmanager.url, "alertmanager is not in var/services.env"
    status = httpx.get(f"{services.alertmanager.url}/api/v2/status", timeout=10).json()
    running = yaml.safe_load(status["config"]["original"])
    assert running["route"]["receiver"] == SHIPPED_ALERTMANAGER["route"]["receiver"]
    assert running["route"]["group_by"] == SHIPPED_ALERTMANAGER["route"]["group_by"]
    [hook] = running["receivers"][0]["webhook_configs"]
    [shipped_hook] = SHIPPED_ALERTMANAGER["receivers"][0]["webhook_configs"]
    assert hook["url"] == shipped_hook["url"]
    token_file = Path(hook["http_config"]["authorization"]["credentials_file"])
    assert token_file.name == shipped_hook["http_config"]["authorization"]["credentials_file"]
    assert token_file.read_text().strip(), "the webhook token file is empty"


def _replay(service: dict, tmp: Path, secrets: dict[str, Path]) -> None:
    """Run the part of a compose service's command that writes its configuration, with the
    container's paths mapped: mounted files to the repository, /etc to ``tmp``."""
    assert service["entrypoint"] == ["/bin/sh", "-c"]
    script = service["command"][0].split(" && exec ")[0]
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if not source.startswith("./"):
            continue
        if target.startswith("/etc/coreplane/"):
            script = script.replace(target, str(ROOT / source))
        else:  # a folder beside the rendered file, e.g. the rules
            (tmp / target.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (tmp / target.lstrip("/")).symlink_to(ROOT / source)
    for name, path in secrets.items():
        script = script.replace(f"/run/secrets/{name}", str(path))
    assert "/etc/coreplane/" not in script, f"a path the test does not map: {script}"
    for folder in ("prometheus", "alertmanager"):
        (tmp / "etc" / folder).mkdir(parents=True, exist_ok=True)
        script = script.replace(f"/etc/{folder}/", f"{tmp}/etc/{folder}/")
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_prometheus_derives_from_the_shipped_configuration(compose, tmp_path):
    service = compose["services"]["prometheus"]
    token = tmp_path / "coreplane_admin_token"
    token.write_text("a-token\n")
    _replay(service, tmp_path, {"coreplane_admin_token": token})
    rendered_path = tmp_path / "etc" / "prometheus" / "prometheus.yml"
    checked = subprocess.run(
        ["promtool", "check", "config", str(rendered_path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (
        f"SUCCESS: {len(list((ROOT / 'alerts' / 'rules').glob('*.yml')))} rule files found" in checked.stdout
    )
    rendered = yaml.safe_load(rendered_path.read_text())
    assert _jobs(rendered) == _jobs(SHIPPED_PROMETHEUS) + COMPOSE_EXPORTERS
    assert rendered["scrape_configs"][0]["static_configs"] == [
        {"targets": ["controlplane-1:8000", "controlplane-2:8000"]}
    ]
    # Only addresses differ: put the placeholders back and the shipped configuration returns.
    text = rendered_path.read_text().split("\n\n  - job_name: haproxy\n")[0]
    for address, placeholder in (('"controlplane-1:8000", "controlplane-2:8000"', '"coreplane.example:8000"'),
                                 ("haproxy:8080", "coreplane.example:8000"),
                                 ("alertmanager:9093", "alertmanager.example:9093"),
                                 (str(token), "/etc/prometheus/coreplane-token")):  # fmt: skip
        text = text.replace(address, placeholder)
    assert yaml.safe_load(text) == SHIPPED_PROMETHEUS


def test_compose_alertmanager_derives_from_the_shipped_configuration(compose, tmp_path):
    service = compose["services"]["alertmanager"]
    assert service["secrets"] == ["coreplane_webhook_token"]
    token = tmp_path / "coreplane_webhook_token"
    token.write_text("a-token\n")
    _replay(service, tmp_path, {})
    rendered_path = tmp_path / "etc" / "alertmanager" / "alertmanager.yml"
    checked = subprocess.run(["amtool", "check-config", str(rendered_path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rendered = yaml.safe_load(rendered_path.read_text())
    hook = rendered["receivers"][0]["webhook_configs"][0]
    assert hook["url"] == "http://haproxy:8080/api/v1/webhooks/alertmanager"
    assert hook["http_config"]["authorization"]["credentials_file"] == "/run/secrets/coreplane_webhook_token"
    # Everything else is the shipped file's.
    shipped = yaml.safe_load((ROOT / "alerts" / "alertmanager.yml").read_text())
    shipped_hook = shipped["receivers"][0]["webhook_configs"][0]
    shipped_hook["url"], shipped_hook["http_config"]["authorization"]["credentials_file"] = (
        hook["url"],
        hook["http_config"]["authorization"]["credentials_file"],
    )
    assert rendered == shipped
    assert compose["services"]["controlplane-1"]["environment"]["COREPLANE_WEBHOOKS__ALERTMANAGER_TOKEN"]
