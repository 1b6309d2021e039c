"""HAProxy: the default instance's runtime socket, and a second instance started from a
config by scripts/haproxy-instance.sh, balancing real HTTP traffic."""

import csv
import http.server
import io
import subprocess
import threading

import httpx
import pytest

from agents.collectors.haproxy import runtime_command
from tests.support.processes import free_port
from tests.support.services import ROOT, reach, require

HELPER = ROOT / "scripts" / "haproxy-instance.sh"


def _stat(sock: str) -> list[dict[str, str]]:
    text = runtime_command(sock, "show stat", 2).lstrip("# ")
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def upstream():
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"upstream")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_default_instance_answers_on_its_runtime_socket(services):
    require(services.haproxy.socket, "haproxy")
    info = reach("haproxy", services.haproxy.socket, runtime_command, services.haproxy.socket, "show info", 2)
    assert "Version: 2.6" in info
    metrics = httpx.get(services.haproxy.metrics_url, timeout=5)
    assert "haproxy_process_uptime_seconds" in metrics.text


def test_instance_from_a_config_balances_and_obeys_the_runtime_api(tmp_path, upstream):
    front = free_port()
    config = tmp_path / "lb.cfg"
    config.write_text(
        f"""
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend web
    bind 127.0.0.1:{front}
    default_backend app
backend app
    option httpchk GET /
    server app1 127.0.0.1:{upstream} check inter 500ms
"""
    )
    name = f"smoke{front}"
    started = subprocess.run(["bash", HELPER, "start", name, config], capture_output=True, text=True)
    assert started.returncode == 0, f"haproxy did not start: {started.stderr}"
    sock = started.stdout.strip()
    try:
        assert httpx.get(f"http://127.0.0.1:{front}/").text == "upstream"
        runtime_command(sock, "disable server app/app1", 2)
        row = next(r for r in _stat(sock) if r["pxname"] == "app" and r["svname"] == "app1")
        assert row["status"] == "MAINT"
        assert httpx.get(f"http://127.0.0.1:{front}/").status_code == 503
    finally:
        subprocess.run(["bash", HELPER, "stop", name], check=True)
