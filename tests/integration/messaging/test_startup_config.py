"""`coreplane serve` refuses to start on a messaging definition or schema that does not
load, naming the entry to fix (rather than failing on the first publish)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.support.processes import coreplane_bin, coreplane_env


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("definition", {"queues": [{"name": "a", "max_priority": 999}]}, "DEFINITION.queues[0].max_priority"),
        ("schemas", [{"exchange": "a", "routing_key": "b", "model": "nowhere.mod:X"}], "SCHEMAS[0].model"),
        ("schemas", [{"exchange": "a", "routing_key": "b", "json_schema": {"type": 5}}], "SCHEMAS[0]"),
    ],
)
def test_serve_refuses_a_messaging_setting_that_does_not_load(tmp_path, name, value, named):
    env = coreplane_env(
        database_url=f"sqlite:///{tmp_path}/store.db",
        rabbitmq__url="amqp://guest:guest@127.0.0.1:1/",
        **{f"messaging__{name}": json.dumps(value)},
    )
    migrated = subprocess.run([coreplane_bin(), "migrate"], env=env, capture_output=True, timeout=60)
    assert migrated.returncode == 0, migrated.stderr.decode()
    serve = subprocess.run([coreplane_bin(), "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert serve.returncode == 2, serve.stderr[-2000:]
    assert f"invalid messaging configuration: COREPLANE_MESSAGING__{named}" in serve.stderr, serve.stderr[
        -2000:
    ]
