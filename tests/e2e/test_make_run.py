"""`make run`'s script end to end: prints the console URL, serves it, stops on Ctrl-C."""

import os
import re
import signal
import subprocess
import time

import httpx

from tests.conftest import ROOT, SERVICES_ENV, free_port


def test_make_run_serves_the_console_and_stops_cleanly_on_ctrl_c(tmp_path, services):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
    env |= {
        "PORT": str(port),
        "COREPLANE_DATABASE_URL": f"sqlite:///{tmp_path}/run.db",
        "COREPLANE_ADMIN_TOKEN": "make-run-test-token",
        "COREPLANE_AGENT__NAME": "make-run-agent",
        "COREPLANE_AGENT__HEARTBEAT_INTERVAL_S": "1",
        "COREPLANE_VAR": str(SERVICES_ENV.parent),
    }
    proc = subprocess.Popen(
        ["bash", "scripts/run.sh"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's
    )
    output, url = [], None
    deadline = time.monotonic() + 120
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line)
        if match := re.search(r"console: (http://\S+)", line):
            url = match.group(1)
    try:
        assert url == f"http://127.0.0.1:{port}/", "".join(output)
        with httpx.Client(base_url=url) as client:
            csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
            client.post("/login", data={"token": "make-run-test-token", "csrf": csrf})
            deadline = time.monotonic() + 15
            while 'data-agent="make-run-agent"' not in (page := client.get("/").text):
                assert time.monotonic() < deadline, "the local agent never reported"
                time.sleep(0.5)
        assert 'data-backend="redis" data-state="up"' in page
        assert 'data-backend="store" data-state="up"' in page
    finally:
        # Ctrl-C in a terminal sends SIGINT to the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert "stopped" in rest
    leftover = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True)
    assert leftover.stdout == "", f"processes left running after Ctrl-C: {leftover.stdout}"
