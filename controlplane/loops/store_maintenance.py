"""Partitions ahead of time, retention by whole partitions, roll-up and dedupe expiry,
and the control history: finished actions (their steps and audit trail go with them)
and rule evaluations; expired console sessions; task history (by age and count); archived
dead letters older than ``messaging.dead_days``. The
totals /metrics counts live in store_counters and stay."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from controlplane import sessions
from controlplane.actions.lifecycle import FINISHED
from controlplane.clock import utcnow
from controlplane.settings import MessagingSettings, RetentionSettings, TasksSettings
from controlplane.store import counters, partitions
from controlplane.store.models import (
    Action,
    InfrastructureEvent,
    InfrastructureMetric,
    IngestBatch,
    MetricRollup1h,
    MetricRollup1m,
    MqDeadLetter,
    RuleEvaluation,
)
from controlplane.tasks import history

log = logging.getLogger("coreplane.store")

# How long a batch_id is remembered: an agent retries far sooner than this.
DEDUPE_DAYS = 7


@dataclass
class MaintenanceReport:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    deleted_rows: int = 0
    folded: int = 0  # counter deltas folded into their totals


class StoreMaintenance:
    def __init__(
        self,
        engine: Engine,
        retention: RetentionSettings,
        tasks: TasksSettings | None = None,
        *,
        messaging: MessagingSettings | None = None,
    ) -> None:
        self.engine = engine
        self.retention = retention
        self.tasks = tasks  # task history's retention; None leaves task runs alone
        self.messaging = messaging  # the dead-letter archive's; None leaves it alone

    def run_once(self, now: datetime | None = None) -> MaintenanceReport:
        now = now or utcnow()
        today = now.date()
        report = MaintenanceReport()
        keep_days = max([self.retention.raw_days, *self.retention.metric_type_days.values()])
        days = [today + timedelta(days=d) for d in range(-1, self.retention.partitions_ahead_days + 1)]
        with self.engine.begin() as conn:
            for table in partitions.PARTITIONED_TABLES:
                report.created += partitions.ensure_partitions(conn, table=table, days=days)
            # Whole partitions go once every metric type may lose them.
            report.dropped += partitions.drop_partitions_before(
                conn, table="infrastructure_metrics", day=today - timedelta(days=keep_days)
            )
            report.dropped += partitions.drop_partitions_before(
                conn,
                table="infrastructure_events",
                day=today - timedelta(days=self.retention.raw_days),
            )
        with self.engine.begin() as conn:
            cutoff = now - timedelta(days=self.retention.raw_days)
            longer = [t for t, d in self.retention.metric_type_days.items() if d > self.retention.raw_days]
            shorter = {t: d for t, d in self.retention.metric_type_days.items() if d < keep_days}
            # Rows inside kept partitions that a shorter retention covers.
            m = InfrastructureMetric
            stmts = [
                delete(m).where(m.timestamp < cutoff, m.metric_type.not_in(longer)),
                delete(InfrastructureEvent).where(InfrastructureEvent.timestamp < cutoff),
                delete(MetricRollup1m).where(
                    MetricRollup1m.bucket < now - timedelta(days=self.retention.rollup_1m_days)
                ),
                delete(MetricRollup1h).where(
                    MetricRollup1h.bucket < now - timedelta(days=self.retention.rollup_1h_days)
                ),
                delete(IngestBatch).where(IngestBatch.received_at < now - timedelta(days=DEDUPE_DAYS)),
                delete(RuleEvaluation).where(
                    RuleEvaluation.at < now - timedelta(days=self.retention.evaluations_days)
                ),
                # Top-level plans only: their steps go by the foreign key's cascade, their
                # audit trail too, and an evaluation that pointed at one keeps its reason.
                delete(Action).where(
                    Action.parent_id.is_(None),
                    Action.state.in_(FINISHED),
                    Action.finished_at < now - timedelta(days=self.retention.actions_days),
                ),
            ]
            stmts += [
                delete(m).where(m.metric_type == t, m.timestamp < now - timedelta(days=d))
                for t, d in shorter.items()
            ]
            if self.messaging is not None:
                dead_cutoff = now - timedelta(days=self.messaging.dead_days)
                stmts.append(delete(MqDeadLetter).where(MqDeadLetter.dead_at < dead_cutoff))
            for stmt in stmts:
                report.deleted_rows += conn.execute(stmt).rowcount or 0
            report.deleted_rows += sessions.prune_expired(conn, now)
        if self.tasks is not None:
            with Session(self.engine) as session, session.begin():
                report.deleted_rows += history.prune(session, tasks=self.tasks, now=now)
        with self.engine.begin() as conn:
            report.folded = counters.fold(conn)
        if report.created or report.dropped or report.deleted_rows:
            log.info(
                "store maintenance: created %s, dropped %s, deleted %d row(s)",
                report.created or "none",
                report.dropped or "none",
                report.deleted_rows,
            )
        return report

    async def run_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:
                log.exception("store maintenance failed; retrying in %.0f s", interval_s)
