"""Talking to a tasks-enabled `coreplane serve` (tests/support/tasks_serve.py) as operators
do: an API client, a token of a chosen role, and waiting for an action or a workflow to end."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.serve import ControlPlane
from tests.support.timing import until

FINISHED = ("succeeded", "failed", "cancelled")


def client(cp: ControlPlane, token: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=f"{cp.url}/api/v1", headers={"Authorization": f"Bearer {token or cp.token}"},
                        timeout=30)  # fmt: skip


def token_of(api: httpx.Client, role: str) -> str:
    """A new API token with ``role`` (``api`` is an admin's client)."""
    answer = api.post("/tokens", json={"name": f"{role}-test", "role": role})
    answer.raise_for_status()
    return answer.json()["token"]


def finished_action(api: httpx.Client, action_id: str, timeout_s: float = 30) -> dict[str, Any]:
    """The action once it has ended (the leader carries task operations out)."""

    def ended() -> dict | None:
        action = api.get(f"/actions/{action_id}").json()
        return action if action["state"] in FINISHED else None

    return until(f"action {action_id} to end", ended, timeout_s, 0.1)


def finished_workflow(api: httpx.Client, workflow_id: str, timeout_s: float = 60) -> dict[str, Any]:
    def ended() -> dict | None:
        workflow = api.get(f"/tasks/workflows/{workflow_id}").json()
        return workflow if workflow["state"] != "running" else None

    return until(f"workflow {workflow_id} to end", ended, timeout_s, 0.1)
