"""HTTP client of the control plane, as an agent sees it."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

from agents.http import HttpClient, HTTPError, Response
from controlplane import __version__


class Retryable(Exception):
    """The control plane was unreachable, failed (5xx) or asked to slow down (429): keep the
    batch, try again; after ``retry_after_s`` when it said so (Retry-After)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks to wait (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


class Refused(Exception):
    """The control plane refused the request (4xx): retrying the same bytes will not help.
    ``errors`` are the problem's items, when it named some (e.g. not_owner)."""

    def __init__(self, status: int, detail: str, errors: list[dict] | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.errors = errors or []


class ControlPlaneClient:
    def __init__(self, base_url: str, token: str, timeout_s: float) -> None:
        self._http = HttpClient(
            base_url,
            timeout_s=timeout_s,
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"coreplane-agent/{__version__}",
            },
        )

    def _call(self, method: str, path: str, **kwargs) -> Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except HTTPError as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        if response.status >= 500 or response.status == 429:
            # 503 + Retry-After: the store was busy (lock contention); nothing was kept.
            wait = retry_after(response.headers.get("Retry-After"))
            raise Retryable(f"{response.status}: {response.text[:200]}", wait)
        if response.status >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {}
            problem = problem if isinstance(problem, dict) else {}
            errors = problem.get("errors")
            errors = errors if isinstance(errors, list) else []
            detail = str(problem.get("detail", response.text))[:500]
            raise Refused(response.status, detail, [e for e in errors if isinstance(e, dict)])
        return response

    def register(self, name: str) -> dict:
        """With an admin token: issue this agent's id and token."""
        return self._call("POST", "/api/v1/agents/register", json_body={"name": name}).json()

    def push_gzip(self, body: bytes) -> dict:
        """Send one spooled batch (already gzip-compressed JSON)."""
        return self._call(
            "POST",
            "/api/v1/ingest",
            body=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        ).json()

    def heartbeat(self, *, agent: str, hostname: str, uptime_s: float, targets: list[dict] = ()) -> None:  # type: ignore[assignment]
        self._call(
            "POST",
            "/api/v1/agents/heartbeat",
            json_body={
                "agent": agent,
                "version": __version__,
                "hostname": hostname,
                "uptime_s": uptime_s,
                "targets": list(targets),
            },
        )

    def start_action(self, action_id: str) -> None:
        self._call("POST", f"/api/v1/actions/{action_id}/start")

    def poll_actions(self, agent_id: str, wait_s: float) -> list[dict]:
        """Long-poll: the actions for this agent, waiting up to ``wait_s`` for one."""
        return self._call(
            "GET", f"/api/v1/agents/{agent_id}/actions", params={"wait": wait_s}, timeout_s=wait_s + 10
        ).json()

    def post_result(self, action_id: str, *, ok: bool, output: dict, error: str | None) -> None:
        result = {"ok": ok, "output": output, "error": error}
        self._call("POST", f"/api/v1/actions/{action_id}/result", json_body=result)

    def close(self) -> None:
        self._http.close()
