"""A private RabbitMQ node for the tests that kill the broker: its own ports, node name, data
dir and epmd, run as the rabbitmq user the way scripts/services/rabbitmq.sh runs the
harness's node (which this never touches).

    with private_rabbit() as rabbit:
        amqp_url, management_url = rabbit
        rabbit.kill9()      # SIGKILL to the Erlang VM: a crash, nothing flushed
        rabbit.restart()    # the same node on the same data dir, waited on until it serves
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.processes import free_port
from tests.support.timing import until

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT_S = 90.0
USER = "rabbitmq"


@dataclass
class PrivateRabbit:
    dir: Path
    node: str
    amqp_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    epmd_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.management_port}"

    def __iter__(self) -> Iterator[str]:
        return iter((self.amqp_url, self.management_url))

    def env(self) -> dict[str, str]:
        d = str(self.dir)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": d,  # the Erlang cookie lives here, for the node and rabbitmqctl alike
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": f"{d}/mnesia",
            "RABBITMQ_LOG_BASE": f"{d}/log",
            "RABBITMQ_CONFIG_FILE": f"{d}/rabbitmq",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{d}/enabled_plugins",
            "RABBITMQ_PID_FILE": f"{d}/rabbitmq.pid",
            "RABBITMQ_LOGS": f"{d}/log/rabbit.log",
        }

    def _as_rabbitmq(self, *argv: str) -> list[str]:
        return ["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in self.env().items()), *argv]

    def start(self) -> None:
        """Start the node on its data dir and wait until AMQP and the management API serve."""
        log = (self.dir / "log" / "console.log").open("ab")
        self.process = subprocess.Popen(
            self._as_rabbitmq(str(RABBIT_BIN / "rabbitmq-server")),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        log.close()
        until(f"the private RabbitMQ {self.node} to serve", self._serving, START_TIMEOUT_S, every_s=0.5,
              logs=self.log_tail)  # fmt: skip

    def _serving(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"the private RabbitMQ exited with {self.process.returncode}:\n{self.log_tail()}"
            )
        try:
            answer = httpx.get(
                f"http://127.0.0.1:{self.management_port}/api/overview", auth=("guest", "guest"), timeout=2
            )
        except httpx.HTTPError:
            return False
        return answer.status_code == 200 and self._vm_pid() is not None

    def _vm_pid(self) -> int | None:
        try:
            return int((self.dir / "rabbitmq.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill9(self) -> None:
        """SIGKILL the Erlang VM (what an OOM kill or a power cut does to the broker)."""
        pid = self._vm_pid()
        assert pid is not None, "the private RabbitMQ has no pid file"
        os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)  # the launcher script ends with its VM
        (self.dir / "rabbitmq.pid").unlink(missing_ok=True)
        until("the killed broker's AMQP port to close", lambda: not _port_open(self.amqp_port), 30)

    def restart(self) -> None:
        """The same node again on the same data dir (after kill9 or stop)."""
        if self.process is not None and self.process.poll() is None:
            self.stop()
        self.start()

    def stop(self) -> None:
        """A clean shutdown (SIGTERM to the launcher, which stops the VM); SIGKILL after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        pid = self._vm_pid()  # read first: the node deletes its pid file as it stops
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        if pid is not None:
            try:
                until("the private RabbitMQ's VM to exit", lambda: not _alive(pid), 30)
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)

    def log_tail(self) -> str:
        parts = []
        for name in ("console.log", "rabbit.log"):
            path = self.dir / "log" / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def epmd(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self._as_rabbitmq("epmd", *args), capture_output=True, timeout=30)


@contextmanager
def private_rabbit() -> Iterator[PrivateRabbit]:
    """A fresh node (guest/guest, management on), stopped with its epmd and deleted after."""
    # Under /tmp, not pytest's tmp_path: the rabbitmq user cannot enter root's pytest dirs.
    root = Path(tempfile.mkdtemp(prefix="coreplane-rabbit-"))
    rabbit = PrivateRabbit(root, node=f"cpt{secrets.token_hex(4)}@localhost")
    (root / "log").mkdir()
    (root / "mnesia").mkdir()
    (root / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{rabbit.amqp_port}\n"
        f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {rabbit.management_port}\n"
        "loopback_users = none\nlog.file.level = warning\n"
    )
    (root / "enabled_plugins").write_text("[rabbitmq_management].\n")
    shutil.chown(root, USER, USER)
    for path in root.rglob("*"):
        shutil.chown(path, USER, USER)
    os.chmod(root, 0o755)
    # Our own epmd on our own port, started first (the node would start one that outlives
    # it) and killed at the end: the harness's epmd is never involved.
    # relaxed: -kill stops it even if a node were still registered.
    rabbit.epmd("-daemon", "-relaxed_command_check")
    try:
        until("the private epmd", lambda: _port_open(rabbit.epmd_port), 10)
        rabbit.start()
        yield rabbit
    finally:
        rabbit.stop()
        killed = rabbit.epmd("-kill")
        assert killed.returncode == 0, f"the private epmd would not stop: {killed.stderr!r}"
        shutil.rmtree(root, ignore_errors=True)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
