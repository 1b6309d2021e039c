"""HTTP client of the control plane, as an agent sees it."""

from __future__ import annotations

import httpx

from controlplane import __version__


class ControlPlaneClient:
    def __init__(self, base_url: str, token: str, timeout_s: float) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout_s,
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"coreplane-agent/{__version__}",
            },
        )

    def heartbeat(self, *, agent: str, hostname: str, uptime_s: float) -> None:
        response = self._http.post(
            "/api/v1/agents/heartbeat",
            json={
                "agent": agent,
                "version": __version__,
                "hostname": hostname,
                "uptime_s": uptime_s,
            },
        )
        response.raise_for_status()

    def close(self) -> None:
        self._http.close()
