"""No loss: the agent streams metrics while the control plane is killed for 60 s;
after it returns, every batch arrives exactly once."""

import os
import secrets
import signal
import subprocess
import threading
import time
import uuid

import sqlalchemy as sa

from agents.config import AgentConfig, TargetConfig
from agents.daemon import Agent, load_or_register
from controlplane.telemetry import HEARTBEAT_METRIC
from tests.support.processes import free_port
from tests.support.serve import start_serve
from tests.support.services import ROOT
from tests.support.timing import until

OUTAGE_S = 60


def test_every_batch_arrives_exactly_once_across_an_outage(tmp_path):
    port, token = free_port(), secrets.token_urlsafe(32)
    db = f"sqlite:///{tmp_path}/store.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
    env |= {"COREPLANE_DATABASE_URL": db, "COREPLANE_ADMIN_TOKEN": token, "COREPLANE_SERVER__PORT": str(port)}
    assert (
        subprocess.run(
            [str(ROOT / ".venv/bin/coreplane"), "migrate"], env=env, capture_output=True
        ).returncode
        == 0
    )
    server = start_serve(env)
    config = AgentConfig(
        name=f"chaos-{uuid.uuid4().hex[:6]}",
        control_plane_url=f"http://127.0.0.1:{port}",
        token_file=tmp_path / "token.json",
        spool_dir=tmp_path / "spool",
        flush_interval_s=0.5,
        heartbeat_interval_s=2,
        request_timeout_s=2,
        targets=[TargetConfig(type="host", name="host", address="/", interval_s=0.25)],
    )
    agent = Agent(config, load_or_register(config, token))
    sent: dict[str, tuple[int, int]] = {}
    lock = threading.Lock()
    append = agent.spool.append

    def recording_append(batch):
        with lock:
            sent[batch["batch_id"]] = (len(batch["metrics"]), len(batch["events"]))
        return append(batch)

    agent.spool.append = recording_append
    agent.start()
    try:
        until("the agent to send a few batches", lambda: len(sent) >= 5)
        server.send_signal(signal.SIGKILL)  # a crash, not a goodbye
        server.wait()
        time.sleep(OUTAGE_S)  # the outage's length is the condition under test, not a wait
        assert agent.spool.depth()[0] > 50, "the agent did not spool during the outage"
        server = start_serve(env)
        until("the spool to drain", lambda: agent.spool.depth()[0] == 0, timeout_s=60, every_s=0.5)
    finally:
        agent.stop()
        server.terminate()
        server.wait()
    assert agent.spool.depth() == (0, 0)
    engine = sa.create_engine(db)
    with engine.connect() as conn:
        stored = set(conn.execute(sa.text("SELECT batch_id FROM ingest_batches")).scalars())
        metric_rows = conn.execute(
            sa.text("SELECT count(*) FROM infrastructure_metrics WHERE metric_type != :heartbeat"),
            {"heartbeat": HEARTBEAT_METRIC},
        ).scalar_one()
        # The agent's own events; the catalog adds its transitions (catalog.*) beside them.
        event_rows = conn.execute(
            sa.text("SELECT count(*) FROM infrastructure_events WHERE event_type NOT LIKE 'catalog.%'")
        ).scalar_one()
    engine.dispose()
    assert stored == set(sent), f"missing {set(sent) - stored}, unexpected {stored - set(sent)}"
    assert metric_rows == sum(m for m, _ in sent.values())
    assert event_rows == sum(e for _, e in sent.values())
    assert len(sent) > 100
