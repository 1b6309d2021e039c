"""docker-compose.yml's structure (there is no Docker engine here to run it)."""

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from controlplane.cli import app as cli
from controlplane.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_has_a_healthcheck(compose):
    missing = [name for name, svc in compose["services"].items() if "test" not in svc.get("healthcheck", {})]
    assert missing == []


def test_the_stack_has_every_role(compose):
    expected = {
        "postgres", "redis", "redis-replica", "memcached-1", "memcached-2", "rabbitmq",
        "elasticsearch", "s3", "controlplane-1", "controlplane-2", "haproxy", "agent",
        "worker", "flower", "prometheus", "alertmanager", "grafana",
    }  # fmt: skip
    assert expected <= set(compose["services"])


def test_referenced_files_exist(compose):
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"
        build = svc.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).exists()


def test_published_ports_do_not_clash(compose):
    host_ports = [port.split(":")[0] for svc in compose["services"].values() for port in svc.get("ports", [])]
    assert len(host_ports) == len(set(host_ports))


def test_coreplane_commands_exist(compose):
    known = {cmd.name or cmd.callback.__name__ for cmd in cli.registered_commands}
    for name, svc in compose["services"].items():
        command = svc.get("command")
        if isinstance(command, list) and command[0] == "coreplane":
            assert command[1] in known, f"{name} runs `coreplane {command[1]}`, which does not exist"


def test_environment_names_are_real_settings(compose):
    def paths(model: type[BaseModel], prefix: str):
        for field_name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from paths(field.annotation, f"{prefix}{field_name.upper()}__")
            else:
                yield f"{prefix}{field_name.upper()}"

    known = set(paths(Settings, "COREPLANE_"))
    for name, svc in compose["services"].items():
        for var in svc.get("environment", {}) or {}:
            if var.startswith("COREPLANE_"):
                assert var in known, f"{name} sets {var}, which no setting reads"
