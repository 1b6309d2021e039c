"""The shipped celery-scale-up-on-wait rule against the real store, on both dialects: the
p95 wait the Celery collector reports, held over 10 s for 30 s, grows the pool once; a high
median with a low p95 does not."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from controlplane.policy.engine import PolicyEngine
from controlplane.store import partitions
from controlplane.store.models import Action, InfrastructureMetric

T0 = datetime(2026, 11, 28, 12, 0, 0)
WAIT = "coreplane_celery_task_wait_seconds"


def report(session, *, p50: float, p95: float, seconds: int) -> None:  # type: ignore[no-untyped-def]
    """The agent's points, every 5 s from T0 on, tagged as the collector and runtime tag them."""
    for at in range(0, seconds + 1, 5):
        for quantile, value in (("0.5", p50), ("0.95", p95)):
            tags = {"instance": "127.0.0.1:5672", "queue": "celery", "quantile": quantile}
            session.add(InfrastructureMetric(id=uuid.uuid4(), metric_type=WAIT, service_name="celery",
                                             timestamp=T0 + timedelta(seconds=at), value=value, tags=tags))  # fmt: skip


@pytest.mark.parametrize(("p50", "p95", "fires"), [(4.0, 25.0, True), (25.0, 8.0, False)], ids=["p95", "p50"])
def test_a_long_wait_grows_the_pool(store, p50, p95, fires):
    if store.dialect == "postgresql":
        with store.engine.begin() as conn:
            partitions.ensure_partitions(conn, table="infrastructure_metrics", days={T0.date()})
    with store.sessions.begin() as session:
        report(session, p50=p50, p95=p95, seconds=90)
    engine = PolicyEngine()
    fired = {}
    for after_s in (30, 45, 61, 75):
        with store.sessions.begin() as session:
            rounds = engine.run_once(session, now=T0 + timedelta(seconds=after_s))
            fired[after_s] = [(r.rule, r.outcome) for r in rounds]
    if not fires:
        assert fired == {30: [], 45: [], 61: [], 75: []}
        return
    # Held from 30 s, so it fires at 61 s (30 s later), then its cooldown holds it back.
    assert fired[30] == fired[45] == []
    assert fired[61] == [("celery-scale-up-on-wait", "fired")]
    assert fired[75] in ([], [("celery-scale-up-on-wait", "suppressed")])
    with store.sessions() as session:
        (action,) = session.query(Action).filter(Action.parent_id.is_(None)).all()
    assert (action.kind, action.target, action.rule) == ("scale", "celery", "celery-scale-up-on-wait")
    assert action.params == {"op": "grow", "n": 1, "min": 1, "max": 4}
