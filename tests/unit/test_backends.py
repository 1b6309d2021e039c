import asyncio

from controlplane.backends import BACKENDS, _redact, probe_all
from controlplane.settings import Settings
from controlplane.store.db import make_engine


def test_unset_backends_are_not_configured_never_errors(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path}/s.db")
    statuses = {s.name: s for s in asyncio.run(probe_all(settings, make_engine(settings.database_url)))}
    assert set(statuses) == {"store", *(b.name for b in BACKENDS)}
    assert statuses["store"].state == "up"
    others = [s for name, s in statuses.items() if name != "store"]
    assert {s.state for s in others} == {"not configured"}


def test_a_backend_that_refuses_is_down_with_a_reason(tmp_path):
    # Port 1 on loopback refuses connections: a real refusal, not a mock.
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/s.db",
        redis={"url": "redis://127.0.0.1:1/0"},
        prometheus={"url": "http://127.0.0.1:1"},
    )
    statuses = {s.name: s for s in asyncio.run(probe_all(settings, make_engine(settings.database_url)))}
    assert statuses["redis"].state == "down"
    assert "ConnectionError" in statuses["redis"].detail
    assert statuses["prometheus"].state == "down"
    assert "Connect" in statuses["prometheus"].detail


def test_passwords_are_redacted_from_addresses():
    assert _redact("amqp://user:secret@127.0.0.1:5672/%2F") == "amqp://user:***@127.0.0.1:5672/%2F"
    assert _redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert _redact(None) is None
