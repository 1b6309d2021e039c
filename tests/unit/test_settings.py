import os

import pytest

from controlplane.settings import SettingsError, load_settings


def test_defaults_are_embedded(monkeypatch):
    for name in list(os.environ):
        if name.startswith("COREPLANE_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.database_url == "sqlite:///var/coreplane.db"
    assert settings.is_sqlite
    assert settings.redis.url is None
    assert settings.memcached.servers == []
    assert settings.server.port == 8000


def test_nested_values_come_from_prefixed_variables(monkeypatch):
    monkeypatch.setenv("COREPLANE_SERVER__PORT", "9123")
    monkeypatch.setenv("COREPLANE_MEMCACHED__SERVERS", '["127.0.0.1:1", "127.0.0.1:2"]')
    monkeypatch.setenv("COREPLANE_DATABASE_URL", "postgresql+psycopg://u@h/db")
    settings = load_settings()
    assert settings.server.port == 9123
    assert settings.memcached.servers == ["127.0.0.1:1", "127.0.0.1:2"]
    assert not settings.is_sqlite


def test_invalid_values_name_the_variable_to_fix(monkeypatch):
    monkeypatch.setenv("COREPLANE_SERVER__PORT", "70000")
    monkeypatch.setenv("COREPLANE_DATABASE_URL", "mysql://x")
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert "COREPLANE_SERVER__PORT" in message
    assert "less than or equal to 65535" in message
    assert "COREPLANE_DATABASE_URL" in message
    assert "sqlite:///" in message


def test_every_field_is_described():
    from pydantic import BaseModel

    from controlplane.settings import Settings

    def walk(model: type[BaseModel], prefix: str):
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                yield from walk(annotation, f"{prefix}{name}__")
            else:
                yield f"{prefix}{name}", field.description

    missing = [name for name, description in walk(Settings, "") if not description]
    assert missing == []
