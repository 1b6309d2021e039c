"""HAProxy through its runtime API (`show stat`): per backend and server status,
sessions, request rate, response codes, queue, check status."""

from __future__ import annotations

import csv
import io
import socket

from agents.collectors import Observation
from agents.config import TargetConfig

UP_STATES = {"UP", "OPEN", "no check"}


def runtime_command(socket_path: str, command: str, timeout: float) -> str:
    """One command on the admin socket (it closes after each answer)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def show_stat(socket_path: str, timeout: float) -> list[dict[str, str]]:
    text = runtime_command(socket_path, "show stat", timeout).lstrip("# ")
    return list(csv.DictReader(io.StringIO(text)))


class HAProxyCollector:
    def __init__(self, target: TargetConfig) -> None:
        self.socket = target.address
        self.timeout = target.timeout_s

    def collect(self) -> Observation:
        obs = Observation()
        down = []
        for row in show_stat(self.socket, self.timeout):
            proxy, server = row["pxname"], row["svname"]
            tags = {"proxy": proxy, "server": server}
            status = row.get("status", "")
            obs.add("coreplane_haproxy_up", 1 if status.split(" ")[0] in UP_STATES else 0, **tags)
            obs.add("coreplane_haproxy_current_sessions", _num(row.get("scur")), **tags)
            obs.add("coreplane_haproxy_sessions_total", _num(row.get("stot")), **tags)
            obs.add("coreplane_haproxy_queue_current", _num(row.get("qcur")), **tags)
            obs.add(
                "coreplane_haproxy_request_rate",
                _num(row.get("req_rate") or row.get("rate")),
                **tags,
            )
            obs.add("coreplane_haproxy_weight", _num(row.get("weight")), **tags)
            for code in ("1xx", "2xx", "3xx", "4xx", "5xx"):
                obs.add(
                    "coreplane_haproxy_responses_total",
                    _num(row.get(f"hrsp_{code}")),
                    code=code,
                    **tags,
                )
            if server not in ("FRONTEND", "BACKEND"):
                obs.add("coreplane_haproxy_server_drain", 1 if status == "DRAIN" else 0, **tags)
                if row.get("check_status"):
                    obs.add(
                        "coreplane_haproxy_check_ok",
                        1 if row["check_status"].startswith("L") and "OK" in row["check_status"] else 0,
                        **tags,
                    )
                if status.startswith("DOWN"):
                    down.append(f"{proxy}/{server}")
            elif server == "BACKEND" and status.startswith("DOWN"):
                down.append(proxy)
        if down:
            obs.status, obs.message = "critical", "down: " + ", ".join(down)
        else:
            obs.message = "every backend and server is up"
        return obs

    def close(self) -> None:
        pass


def _num(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None
