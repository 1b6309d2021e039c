"""`make run`'s script end to end: prints the console URL, serves it, stops on Ctrl-C;
keeps its files private, and the agent runs without the admin token."""

import os
import re
import signal
import stat
import subprocess
from pathlib import Path

import httpx
from dotenv import dotenv_values

from tests.support.console import page_with
from tests.support.processes import free_port
from tests.support.services import ROOT, SERVICES_ENV
from tests.support.timing import until


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _agent_pid(group: int) -> int:
    listed = subprocess.run(["pgrep", "-g", str(group), "-a"], capture_output=True, text=True).stdout
    pids = [int(line.split()[0]) for line in listed.splitlines() if re.search(r"coreplane agent\s*$", line)]
    assert len(pids) == 1, listed
    return pids[0]


def test_make_run_serves_the_console_and_stops_cleanly_on_ctrl_c(tmp_path, services):
    port = free_port()
    var = tmp_path / "var"  # made by the script, so its mode is the script's doing
    env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
    env |= {k: v for k, v in dotenv_values(SERVICES_ENV).items() if v is not None}
    env |= {
        "PORT": str(port),
        "COREPLANE_DATABASE_URL": f"sqlite:///{tmp_path}/run.db",
        "COREPLANE_ADMIN_TOKEN": "make-run-test-token",
        "COREPLANE_AGENT__NAME": "make-run-agent",
        "COREPLANE_AGENT__HEARTBEAT_INTERVAL_S": "1",
        "COREPLANE_VAR": str(var),
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
    output: list[str] = []

    def console_url() -> str | None:
        line = proc.stdout.readline()
        assert line, f"scripts/run.sh ended before it printed the console's URL:\n{''.join(output)}"
        output.append(line)
        match = re.search(r"console: (http://\S+)", line)
        return match.group(1) if match else None

    try:
        url = until("scripts/run.sh to print the console's URL", console_url, 120, every_s=0,
                    logs=lambda: "".join(output))  # fmt: skip
        assert url == f"http://127.0.0.1:{port}/", "".join(output)
        with httpx.Client(base_url=url) as client:
            csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
            client.post("/login", data={"token": "make-run-test-token", "csrf": csrf})
            page = page_with(client, "/", 'data-agent="make-run-agent"', "the local agent to report", 15)
        assert 'data-backend="redis" data-state="up"' in page
        assert 'data-backend="store" data-state="up"' in page
        # Finding 17: the agent holds its own token, not the admin credential.
        environ = Path(f"/proc/{_agent_pid(proc.pid)}/environ").read_bytes().split(b"\0")
        assert not [e for e in environ if e.startswith(b"COREPLANE_ADMIN_TOKEN=")]
        # Finding 2: nobody but this user reads the store, the logs, the tokens, the spool.
        store = [tmp_path / f"run.db{suffix}" for suffix in ("", "-wal", "-shm")]
        agent_dir = var / "agent"  # COREPLANE_VAR's, so this run made every file checked here
        private = [*store, var / "migrate.log", agent_dir / "make-run-agent.token.json"]
        spool = agent_dir / "make-run-agent.spool"
        # The console lists the agent once it registered; its daemon (and spool) may start later.
        until("the running agent's spool folder", spool.is_dir, 30)
        private += [p for p in spool.rglob("*") if p.is_file()]
        assert {str(p): oct(_mode(p)) for p in private} == {str(p): "0o600" for p in private}
        folders = [var, spool, *(p for p in spool.rglob("*") if p.is_dir())]
        assert {str(p): oct(_mode(p)) for p in folders} == {str(p): "0o700" for p in folders}
    finally:
        # Ctrl-C in a terminal sends SIGINT to the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert "stopped" in rest
    leftover = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True)
    assert leftover.stdout == "", f"processes left running after Ctrl-C: {leftover.stdout}"
