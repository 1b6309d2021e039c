"""The real local services tests use, as written to var/services.env by scripts/services.sh."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dotenv import dotenv_values

from controlplane.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent.parent
SERVICES_ENV = Path(os.environ.get("COREPLANE_VAR", ROOT / "var")) / "services.env"


def services_settings() -> Settings:
    """Settings pointing at the real local services; fails (never skips) when they are absent."""
    if not SERVICES_ENV.exists():
        pytest.fail(
            f"{SERVICES_ENV} is missing: start the real services with `scripts/services.sh up` "
            "(or run `make test`, which does it)"
        )
    return load_settings(_env_file=SERVICES_ENV)


def services_env() -> dict[str, str]:
    """services.env as COREPLANE_* variables (for a child process)."""
    return {k: v for k, v in dotenv_values(SERVICES_ENV).items() if v is not None}


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
