"""The agent's batches against the control plane's schema (issue 13, section 4): the agent
builds plain dicts, so this is where a drift between the two sides shows. A batch goes the
agent's whole way: probes into a Buffer, the Shipper's own figures, a real Spool on disk."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator

import pytest

from agents.client import ControlPlaneClient
from agents.config import TargetConfig
from agents.runtime import Buffer, Disowned, Shipper, TargetLoop
from agents.spool import Spool
from controlplane.clock import utcnow
from controlplane.ops.ingest import check_limits
from controlplane.schemas.ingest import IngestBatchIn
from controlplane.settings import IngestSettings, RetentionSettings


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port held but not listening: connecting is refused at once, and no other
    process can take it while the test runs."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def _spooled(spool: Spool) -> list[dict]:
    return [json.loads(gzip.decompress(body)) for _path, body in spool.pending()]


def test_a_shipped_batch_is_one_the_control_plane_accepts(tmp_path, closed_port):
    buffer = Buffer()
    # A passing probe (figures and a first health event), a failed one (a critical health
    # event, the up series at 0) and a disowned target (the agent's own warning event).
    host = TargetConfig(type="host", name="host", address=str(tmp_path), role="primary", tags={"dc": "a"})
    redis = TargetConfig(
        type="redis", name="redis", address=f"redis://127.0.0.1:{closed_port}/0", timeout_s=1
    )
    for target in (host, redis):
        loop = TargetLoop(target, buffer)
        loop.run_once()
        loop.close()
    disowned = Disowned("edge-1", buffer)
    disowned.add("pg", "10.0.0.3:5432", "owned by agent 'vm'")
    spool = Spool(tmp_path / "spool", 1 << 20)
    client = ControlPlaneClient(f"http://127.0.0.1:{closed_port}", "token", timeout_s=1)
    shipper = Shipper(client, spool, buffer, "edge-1", disowned)
    shipper.last_push_s = 0.25  # as after a delivered batch: every own figure is in the next

    assert shipper.run_once() == 0  # the control plane is away: the batch waits in the spool
    (sent,) = _spooled(spool)

    batch = IngestBatchIn.model_validate(sent)
    assert check_limits(batch, limits=IngestSettings(), retention=RetentionSettings(), now=utcnow()) == []
    metrics = {(m.service_name, m.metric_type) for m in batch.metrics}
    assert {
        ("host", "coreplane_host_up"),
        ("host", "coreplane_host_cpu_ratio"),
        ("redis", "coreplane_redis_up"),
        ("coreplane_agent", "coreplane_agent_probe_duration_seconds"),
        ("coreplane_agent", "coreplane_agent_spool_batches"),
        ("coreplane_agent", "coreplane_agent_push_errors"),
        ("coreplane_agent", "coreplane_agent_push_seconds"),
    } <= metrics
    events = [(e.event_type, e.service_name, e.status) for e in batch.events]
    assert events == [
        ("health", "host", "passing"),
        ("health", "redis", "critical"),
        ("agent.target_refused", "coreplane_agent", "warning"),
    ]
