"""`coreplane agent --discover`: probe the usual local ports, write a starter agent.yaml."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml

# (type, name, port, address template)
USUAL = [
    ("redis", "redis", 6379, "redis://127.0.0.1:{port}/0"),
    ("memcached", "memcached", 11211, "127.0.0.1:{port}"),
    ("postgres", "postgres", 5432, "postgresql://USER:PASSWORD@127.0.0.1:{port}/postgres"),
    ("rabbitmq", "rabbitmq", 15672, "http://guest:guest@127.0.0.1:{port}"),
    ("elasticsearch", "elasticsearch", 9200, "http://127.0.0.1:{port}"),
    ("s3", "s3", 9000, "127.0.0.1:{port}"),
    ("s3", "s3", 8333, "127.0.0.1:{port}"),
]
HAPROXY_SOCKETS = ["/run/haproxy/admin.sock", "/var/run/haproxy.sock", "/var/lib/haproxy/stats"]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def write_starter_config(path: Path, *, name: str) -> int:
    targets = [{"type": "host", "name": "host", "address": "/"}]
    for kind, service, port, template in USUAL:
        if _listening(port):
            targets.append({"type": kind, "name": service, "address": template.format(port=port)})
    targets += [
        {"type": "haproxy", "name": "haproxy", "address": sock}
        for sock in HAPROXY_SOCKETS
        if Path(sock).exists()
    ]
    config = {
        "name": name,
        "control_plane_url": "http://127.0.0.1:8000",
        "token_file": "var/agent/token.json",
        "spool_dir": "var/agent/spool",
        "targets": targets,
    }
    path.write_text(
        "# Written by `coreplane agent --discover`: check addresses and credentials.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return len(targets)
