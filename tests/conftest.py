"""Shared fixtures. Services come from var/services.env, written by scripts/services.sh."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controlplane.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SERVICES_ENV = Path(os.environ.get("COREPLANE_VAR", ROOT / "var")) / "services.env"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The folder is the marker, so `pytest -m unit` needs no services.
    for item in items:
        kind = Path(item.fspath).relative_to(ROOT / "tests").parts[0]
        if kind in {"unit", "integration", "e2e", "browser", "chaos"}:
            item.add_marker(kind)


@pytest.fixture(scope="session")
def services() -> Settings:
    """Settings pointing at the real local services (`scripts/services.sh up`)."""
    if not SERVICES_ENV.exists():
        pytest.fail(
            f"{SERVICES_ENV} is missing: start the real services with `scripts/services.sh up` "
            "(or run `make test`, which does it)"
        )
    return load_settings(_env_file=SERVICES_ENV)


def require(settings_value: object, service: str) -> None:
    """Fail (never skip) when a service the test needs is absent from services.env."""
    if not settings_value:
        pytest.fail(f"{service} is not in {SERVICES_ENV}: run `scripts/services.sh up {service}`")


class ServiceDown(AssertionError):
    pass


def reach(service: str, address: object, call, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Call a client; a failure names the service and how to bring it back."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:
        raise ServiceDown(
            f"{service} at {address} did not answer: {type(exc).__name__}: {exc}\n"
            f"  start it with: scripts/services.sh up {service}"
        ) from exc
