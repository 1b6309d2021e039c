"""`coreplane dashboards push`: provision dashboards/json/ into a Grafana folder through
grafana-client, idempotently: each dashboard is saved by its uid with overwrite, so a
second push replaces the first instead of adding copies."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "dashboards" / "json"


class PushError(Exception):
    """What went wrong, phrased for the operator."""


@dataclass
class Pushed:
    uid: str
    title: str
    url: str
    version: int | None


def load(directory: Path) -> list[dict[str, Any]]:
    """Every dashboard JSON in ``directory``, the overview first; each must have a uid and a title."""
    if not directory.is_dir():
        hint = "pass --path (a source checkout's dashboards/json)"
        raise PushError(f"{directory} is not a folder of dashboard JSON: {hint}")
    found = []
    for path in sorted(directory.glob("*.json"), key=lambda p: (p.stem != "overview", p.name)):
        try:
            dashboard = json.loads(path.read_text())
        except ValueError as exc:
            raise PushError(f"{path} is not valid JSON: {exc}") from None
        if not dashboard.get("uid") or not dashboard.get("title"):
            raise PushError(f"{path} has no uid or no title: a dashboard is pushed by its uid")
        found.append(dashboard)
    if not found:
        raise PushError(f"{directory} holds no *.json dashboard")
    return found


def folder_uid(title: str) -> str:
    """The folder's uid: its title, reduced to what Grafana accepts (letters, digits, - and _)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", title).strip("-")[:40] or "coreplane"


def push(grafana_url: str, token: str, dashboards: list[dict[str, Any]], folder: str) -> list[Pushed]:
    """Save ``dashboards`` into ``folder`` (created if missing); PushError says why not."""
    import requests
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError

    # grafana-client appends "api" to the URL's path: keep a sub-path (/grafana) a folder.
    base = grafana_url if grafana_url.endswith("/") else grafana_url + "/"
    api = GrafanaApi.from_url(base, credential=token, timeout=10.0)
    try:
        uid = _ensure_folder(api, folder, GrafanaClientError)
        pushed = []
        for dashboard in dashboards:
            answer = api.dashboard.update_dashboard(
                {
                    "dashboard": {**dashboard, "id": None},  # matched by uid, not by a database id
                    "folderUid": uid,
                    "overwrite": True,
                    "message": "coreplane dashboards push",
                }
            )
            version = answer.get("version")
            pushed.append(Pushed(dashboard["uid"], dashboard["title"], answer.get("url", ""), version))
        return pushed
    except requests.exceptions.JSONDecodeError:  # a 200 that is not JSON: not Grafana's API
        raise PushError(
            f"{grafana_url} does not answer like Grafana's HTTP API: check --grafana-url"
        ) from None
    except requests.exceptions.RequestException as exc:
        raise PushError(f"cannot reach Grafana at {grafana_url}: {type(exc).__name__}: {exc}") from None
    except GrafanaUnauthorizedError:
        hint = "pass a service account token (Administration > Service accounts) with the Editor role"
        raise PushError(f"Grafana at {grafana_url} refused the token (401): {hint}") from None
    except GrafanaException as exc:
        hint = (
            " (the token's role cannot write dashboards: it needs Editor)" if exc.status_code == 403 else ""
        )
        raise PushError(f"Grafana at {grafana_url} answered {exc.status_code}: {exc.message}{hint}") from None


def _ensure_folder(api: Any, title: str, client_error: type[Exception]) -> str:
    """The uid of the folder called ``title``: ours, one of that title made by hand or by file
    provisioning, or a new one."""
    uid = folder_uid(title)
    try:
        return api.folder.get_folder(uid)["uid"]
    except client_error as exc:
        if getattr(exc, "status_code", None) != 404:
            raise
    for existing in api.folder.get_all_folders():
        if existing.get("title") == title:
            return existing["uid"]
    return api.folder.create_folder(title, uid=uid)["uid"]
