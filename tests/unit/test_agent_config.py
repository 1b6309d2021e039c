"""agent.yaml validation and --discover, without services."""

import pytest
import yaml

from agents.config import ConfigError, load_config
from agents.discover import write_starter_config
from agents.runtime import instance_of


def test_a_valid_config_loads(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "edge-1",
                "targets": [
                    {
                        "type": "redis",
                        "name": "redis",
                        "address": "redis://127.0.0.1:6379/0",
                        "role": "primary",
                    },
                    {"type": "host", "name": "host", "address": "/", "interval_s": 5},
                ],
            }
        )
    )
    config = load_config(path)
    assert [t.type for t in config.targets] == ["redis", "host"]
    assert config.targets[1].interval_s == 5


def test_errors_name_the_key_to_fix(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text(
        "name: edge-1\ntargets:\n  - type: mongodb\n    name: m\n    address: x\n  - type: redis\n    name: r\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "targets.0.type" in message
    assert "targets.1.address: Field required" in message


def test_discover_writes_a_config_that_loads(tmp_path):
    path = tmp_path / "agent.yaml"
    found = write_starter_config(path, name="discovered")
    config = load_config(path)
    assert config.name == "discovered"
    assert len(config.targets) == found >= 1
    assert config.targets[0].type == "host"


def test_instances_never_carry_credentials():
    assert instance_of("postgresql://user:secret@db.local:5432/app") == "db.local:5432"
    assert instance_of("http://guest:guest@127.0.0.1:15672") == "127.0.0.1:15672"
    assert instance_of("127.0.0.1:11211") == "127.0.0.1:11211"
    assert instance_of("/run/haproxy/admin.sock") == "/run/haproxy/admin.sock"
