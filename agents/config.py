"""agent.yaml: the agent's identity, the control plane, the spool, and its targets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.collectors.registry import COLLECTORS

# The registry's keys, so a collector added there is a type agent.yaml accepts. Only the
# keys: the registry names its classes as strings, so no backend client is imported here.
if TYPE_CHECKING:
    TargetType = str  # a type checker cannot read a Literal built at run time
else:
    TargetType = Literal[tuple(COLLECTORS)]


class TargetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: TargetType
    name: str = Field(min_length=1, max_length=50, pattern=r"^[A-Za-z_][A-Za-z0-9_.:\-]*$",
                      description="The catalog service this target belongs to.")  # fmt: skip
    address: str = Field(description="URL, DSN, host:port or socket path, per type.")
    role: str | None = Field(None, description="primary, replica, ...")
    tags: dict[str, str] = Field(default_factory=dict)
    interval_s: float = Field(10.0, gt=0, le=3600)
    timeout_s: float = Field(5.0, gt=0, le=120)
    options: dict[str, Any] = Field(default_factory=dict, description="Collector-specific.")


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._\-]+$")
    control_plane_url: str = "http://127.0.0.1:8000"
    token_file: Path = Field(Path("var/agent/token.json"), description="Agent id and token (0600).")
    spool_dir: Path = Path("var/agent/spool")
    spool_max_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    # Like Telegraf's flush_interval: fewer, larger batches cost less on both ends; what
    # is collected waits at most this long in memory before it reaches the spool.
    flush_interval_s: float = Field(5.0, gt=0, le=60, description="Seconds between two batches.")
    heartbeat_interval_s: float = Field(10.0, gt=0, le=3600)
    request_timeout_s: float = Field(10.0, gt=0, le=120)
    targets: list[TargetConfig] = Field(default_factory=list)


class ConfigError(Exception):
    pass


def load_config(path: Path) -> AgentConfig:
    """Parse and validate agent.yaml; errors name the key path to fix."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return AgentConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(f"{path} is not a valid agent config:\n" + "\n".join(lines)) from None
