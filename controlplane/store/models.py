"""Tables. The three ``infrastructure_*`` tables are a public contract (DESIGN.md §3):
Grafana's Postgres data source queries them directly, so names and columns stay put.

On PostgreSQL, metrics and events are range-partitioned by day: migration 0001 declares
it (these models do not, so the schema is the migrations'), and store/partitions.py
creates and drops the daily partitions. Their primary key therefore also carries
``timestamp`` (PostgreSQL requires the partition key in every unique constraint); ``id``
stays a random UUID per row.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSONB on Postgres (GIN-indexable), JSON text on SQLite.
JSONDoc = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    # Deterministic constraint names, identical on both dialects, so migrations can name them.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


# --- the seed's public tables -------------------------------------------------------


class InfrastructureEvent(Base):
    __tablename__ = "infrastructure_events"
    __table_args__ = (
        Index("ix_events_service_time", "service_name", "timestamp"),
        Index("ix_events_type_time", "event_type", "timestamp"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    event_type: Mapped[str] = mapped_column(String(50))
    timestamp: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    service_name: Mapped[str] = mapped_column(String(50))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    status: Mapped[str | None] = mapped_column(String(20))


class InfrastructureMetric(Base):
    __tablename__ = "infrastructure_metrics"
    __table_args__ = (Index("ix_metrics_type_service_time", "metric_type", "service_name", "timestamp"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    metric_type: Mapped[str] = mapped_column(String(50))
    timestamp: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    service_name: Mapped[str] = mapped_column(String(50))
    value: Mapped[float] = mapped_column(Float)
    tags: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)


class InfrastructureSetting(Base):
    __tablename__ = "infrastructure_settings"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    setting_type: Mapped[str] = mapped_column(String(50), unique=True)
    value: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    updated_by: Mapped[str | None] = mapped_column(String(100))


# --- roll-ups -----------------------------------------------------------------------


class _Rollup:
    """count/sum/min/max per series and bucket; avg is sum/count."""

    metric_type: Mapped[str] = mapped_column(String(50), primary_key=True)
    service_name: Mapped[str] = mapped_column(String(50), primary_key=True)
    series_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    tags: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    count: Mapped[int] = mapped_column(BigInteger)
    sum: Mapped[float] = mapped_column(Float)
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)


class MetricRollup1m(_Rollup, Base):
    __tablename__ = "metric_rollups_1m"
    __table_args__ = (
        Index("ix_rollups_1m_bucket", "bucket"),
        Index("ix_rollups_1m_type_bucket", "metric_type", "bucket"),
    )


class MetricRollup1h(_Rollup, Base):
    __tablename__ = "metric_rollups_1h"
    __table_args__ = (
        Index("ix_rollups_1h_bucket", "bucket"),
        Index("ix_rollups_1h_type_bucket", "metric_type", "bucket"),
    )


# --- ingest bookkeeping ---------------------------------------------------------------


class IngestBatch(Base):
    """One row per accepted batch: the idempotency record. A batch id is the sending
    agent's own (one agent cannot shadow another's), and the same id sent again with a
    different body is a conflict, told apart by ``content_hash`` (SHA-256 of the body as
    received, after gunzip)."""

    __tablename__ = "ingest_batches"

    agent: Mapped[str] = mapped_column(String(100), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    metrics: Mapped[int] = mapped_column(Integer)
    events: Mapped[int] = mapped_column(Integer)


# --- credentials ----------------------------------------------------------------------


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    registered_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime)
    version: Mapped[str | None] = mapped_column(String(40))
    hostname: Mapped[str | None] = mapped_column(String(255))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))  # viewer | operator | admin
    created_at: Mapped[datetime] = mapped_column(DateTime)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class ConsoleSession(Base):
    """A console login, kept server-side so it can be ended: logout deletes it, and a
    disable, role change or password change deletes all of that user's. The cookie holds
    a random session id; only its SHA-256 is stored."""

    __tablename__ = "console_sessions"

    id_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The user's name, or "admin-token" for a bootstrap login with the admin token.
    username: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # For an admin-token login: the token's digest then, so a new admin token ends it.
    credential_digest: Mapped[str | None] = mapped_column(String(64))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    client: Mapped[str | None] = mapped_column(String(100))


class ControlSecret(Base):
    """Secrets the control plane keeps for itself (the admin token's digest, the cookie
    signing key). Not a seed table: Grafana's read-only role on the public tables never
    sees it, and the settings API never serves it."""

    __tablename__ = "control_secrets"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    created_by: Mapped[str | None] = mapped_column(String(100))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


# --- settings history -----------------------------------------------------------------


class SettingHistory(Base):
    __tablename__ = "settings_history"
    __table_args__ = (UniqueConstraint("setting_type", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    setting_type: Mapped[str] = mapped_column(String(50))
    version: Mapped[int] = mapped_column(Integer)
    value: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    updated_by: Mapped[str | None] = mapped_column(String(100))


# --- catalog --------------------------------------------------------------------------


class CatalogService(Base):
    __tablename__ = "catalog_services"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    kind: Mapped[str] = mapped_column(String(30))  # redis, postgres, rabbitmq, ...
    tags: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # Bumped on every change to the service or its instances: blocking queries wait on it.
    version: Mapped[int] = mapped_column(BigInteger, default=1, server_default="1")


class CatalogInstance(Base):
    __tablename__ = "catalog_instances"
    __table_args__ = (UniqueConstraint("service_id", "address"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("catalog_services.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(255))
    role: Mapped[str | None] = mapped_column(String(30))  # primary, replica, ...
    health: Mapped[str] = mapped_column(String(20), default="unknown")
    tags: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime)
    health_message: Mapped[str | None] = mapped_column(Text)
    health_since: Mapped[datetime | None] = mapped_column(DateTime)
    # Flap damping: a better state reported by the agent waits here until it has held.
    pending_health: Mapped[str | None] = mapped_column(String(20))
    pending_since: Mapped[datetime | None] = mapped_column(DateTime)
    ttl_s: Mapped[float] = mapped_column(Float, default=30.0, server_default="30")


# --- actions and alerts ---------------------------------------------------------------


class Action(Base):
    __tablename__ = "actions"
    __table_args__ = (Index("ix_actions_state", "state"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(50))
    target: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    state: Mapped[str] = mapped_column(String(20))  # pending..succeeded|failed|cancelled
    idempotency_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    requested_by: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("actions.id", ondelete="CASCADE"), index=True
    )
    rule: Mapped[str | None] = mapped_column(String(100), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    timeout_s: Mapped[float] = mapped_column(Float, default=60.0, server_default="60")
    not_before: Mapped[datetime | None] = mapped_column(DateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    # What led to it: {"events": [ids], "alerts": [fingerprints]}.
    links: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)


class ActionAudit(Base):
    """Every state change of an action: who (an operator, a rule, an agent, the engine) and why."""

    __tablename__ = "action_audit"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    action_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("actions.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(100))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)


class RuleEvaluation(Base):
    """Why a rule fired or why it was held back (cooldown, concurrency, dry run, error)."""

    __tablename__ = "rule_evaluations"
    __table_args__ = (Index("ix_rule_evaluations_rule_at", "rule", "at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    rule: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(DateTime)
    outcome: Mapped[str] = mapped_column(String(20))  # fired | suppressed | dry_run | error
    reason: Mapped[str] = mapped_column(Text)
    action_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("actions.id", ondelete="SET NULL"))
    context: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)


class StoreCounter(Base):
    """Totals /metrics serves as counters (actions by kind and state, rule evaluations by
    rule and outcome). Writers add a StoreCounterDelta row in their own transaction (no
    shared row to lock, and a rolled-back savepoint takes its delta with it); the
    maintenance loop folds deltas in here. Retention pruning the history never makes a
    counter go down, and reading one is a small table, not a GROUP BY over history."""

    __tablename__ = "store_counters"

    family: Mapped[str] = mapped_column(String(50), primary_key=True)  # actions | policy_evaluations
    first: Mapped[str] = mapped_column(String(100), primary_key=True)  # kind | rule
    second: Mapped[str] = mapped_column(String(20), primary_key=True)  # state | outcome
    value: Mapped[int] = mapped_column(BigInteger)


class StoreCounterDelta(Base):
    """One increment of a StoreCounter, not folded in yet."""

    __tablename__ = "store_counter_deltas"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    family: Mapped[str] = mapped_column(String(50))
    first: Mapped[str] = mapped_column(String(100))
    second: Mapped[str] = mapped_column(String(20))


class AuditEntry(Base):
    """Every change a person (or token) made: who, what, to which thing, from where."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))  # user.create, rules.replace, login.failed, ...
    target: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    client: Mapped[str | None] = mapped_column(String(100))


class LeaderLease(Base):
    """Who leads (evaluates rules, dispatches actions) and until when; the PostgreSQL
    advisory lock decides, this row tells everyone else."""

    __tablename__ = "leader_lease"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    epoch: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class AlertRecord(Base):
    """Alerts received from Alertmanager or Grafana, deduplicated by fingerprint."""

    __tablename__ = "alerts"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    alertname: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))  # firing | resolved
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    annotations: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    starts_at: Mapped[datetime | None] = mapped_column(DateTime)
    ends_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


# --- background tasks (Celery) --------------------------------------------------------


class TaskRun(Base):
    """One Celery task as the control plane heard of it from Celery's events: one row per
    task id, updated as it moves (sent, received, started, retried, succeeded, failed,
    revoked, rejected). Kept ``tasks.history_days`` and at most ``tasks.history_max_rows``
    rows; arguments are stored redacted and every text capped (controlplane/tasks/history.py)."""

    __tablename__ = "task_runs"
    __table_args__ = (
        Index("ix_task_runs_updated_at", "updated_at"),
        Index("ix_task_runs_name_finished", "name", "finished_at"),
        Index("ix_task_runs_queue_finished", "queue", "finished_at"),
        Index("ix_task_runs_state_updated", "state", "updated_at"),
    )

    task_id: Mapped[str] = mapped_column(String(155), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    queue: Mapped[str | None] = mapped_column(String(200))
    # PENDING RECEIVED STARTED RETRY SUCCESS FAILURE REVOKED REJECTED
    state: Mapped[str] = mapped_column(String(20))
    priority: Mapped[int | None] = mapped_column(Integer)
    args: Mapped[str | None] = mapped_column(Text)
    kwargs: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)
    exception: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    worker: Mapped[str | None] = mapped_column(String(200))
    root_id: Mapped[str | None] = mapped_column(String(155))
    parent_id: Mapped[str | None] = mapped_column(String(155))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The latest send's due time (its ETA when later: a countdown, a retry's backoff).
    due_at: Mapped[datetime | None] = mapped_column(DateTime)
    received_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    runtime_s: Mapped[float | None] = mapped_column(Float)
    wait_s: Mapped[float | None] = mapped_column(Float)  # due (else received) -> started
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class TaskWorkflow(Base):
    """A workflow submitted as a declarative spec (steps and edges): one record, its steps
    in TaskWorkflowStep."""

    __tablename__ = "task_workflows"
    __table_args__ = (Index("ix_task_workflows_state_created", "state", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20))  # running | succeeded | failed | cancelled
    spec: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    reason: Mapped[str | None] = mapped_column(Text)  # why it failed or was cancelled
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class TaskWorkflowStep(Base):
    __tablename__ = "task_workflow_steps"
    __table_args__ = (UniqueConstraint("workflow_id", "step"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workflow_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("task_workflows.id", ondelete="CASCADE"), index=True
    )
    step: Mapped[str] = mapped_column(String(100))
    task: Mapped[str] = mapped_column(String(200))
    task_id: Mapped[str] = mapped_column(String(155), unique=True)
    depends_on: Mapped[list[str]] = mapped_column(JSONDoc)
    # waiting | queued | running | succeeded | failed | stopped | cancelled
    state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any] = mapped_column(JSONDoc, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class TaskSchedule(Base):
    """A periodic (interval or crontab) or one-off schedule that `coreplane beat` runs
    from the store: an edit takes effect on beat's next look, without a restart."""

    __tablename__ = "task_schedules"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    task: Mapped[str] = mapped_column(String(200))
    args: Mapped[list[Any]] = mapped_column(JSONDoc)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    queue: Mapped[str | None] = mapped_column(String(200))
    priority: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))  # interval | crontab | once
    every_s: Mapped[float | None] = mapped_column(Float)
    crontab: Mapped[str | None] = mapped_column(String(100))  # "m h dom mon dow", UTC
    run_at: Mapped[datetime | None] = mapped_column(DateTime)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime)
    total_runs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    updated_by: Mapped[str] = mapped_column(String(100))


class MqDeadLetter(Base):
    """A message dead-lettered on RabbitMQ, archived from its queue's final dead-letter queue
    (Q.dlq) so that it outlives a purge: where it came from, why it died, its headers and
    body (capped at ``messaging.archive_body_bytes``), and what operators did with it
    (controlplane/messaging/archive.py writes it, messaging/dead.py replays or discards it).
    ``fingerprint`` makes archiving idempotent: a dead letter redelivered after a crash
    between commit and ack is stored once."""

    __tablename__ = "mq_dead_letters"
    __table_args__ = (
        Index("ix_mq_dead_letters_state_dead_at", "state", "dead_at"),
        Index("ix_mq_dead_letters_queue_dead_at", "queue", "dead_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    vhost: Mapped[str] = mapped_column(String(200), default="/", server_default="/")
    queue: Mapped[str] = mapped_column(String(200))  # the queue it failed in (Q, not Q.dlq)
    exchange: Mapped[str] = mapped_column(String(200))  # where it was first published
    routing_key: Mapped[str] = mapped_column(String(255))
    message_id: Mapped[str | None] = mapped_column(String(200))
    content_type: Mapped[str | None] = mapped_column(String(100))
    properties: Mapped[dict[str, Any]] = mapped_column(JSONDoc)  # priority, correlation_id, ...
    headers: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    body_bytes: Mapped[int] = mapped_column(Integer)  # the original size
    truncated: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    reason: Mapped[str] = mapped_column(String(50))  # failed invalid rejected expired maxlen delivery_limit
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    dead_at: Mapped[datetime] = mapped_column(DateTime)
    archived_at: Mapped[datetime] = mapped_column(DateTime)
    state: Mapped[str] = mapped_column(String(20), default="dead")  # dead | replayed | discarded
    replay_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_by: Mapped[str | None] = mapped_column(String(100))


class StorageBucket(Base):
    """A bucket coreplane manages on the S3 server (controlplane/storage/buckets.py): its
    quota, which coreplane enforces, the usage last counted against it, and its lifecycle
    rules in coreplane's format (controlplane/storage/lifecycle.py). The objects themselves
    live only on the server."""

    __tablename__ = "storage_buckets"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    objects: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    usage_at: Mapped[datetime | None] = mapped_column(DateTime)  # when usage was last counted in full
    lifecycle: Mapped[list[dict[str, Any]]] = mapped_column(JSONDoc, default=list)
    lifecycle_on_server: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class StorageGrant(Base):
    """What one coreplane user or role may do in one bucket (controlplane/storage/access.py):
    ``subject`` is ``user:<name>`` (a console user or an API token's name) or
    ``role:<role>``; ``level`` is read < write < admin."""

    __tablename__ = "storage_grants"
    __table_args__ = (UniqueConstraint("bucket", "subject"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    bucket: Mapped[str] = mapped_column(String(63), index=True)
    subject: Mapped[str] = mapped_column(String(120))
    level: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(100))


class StorageShare(Base):
    """A revocable share link ``/s/{token}`` (controlplane/storage/shares.py): only the
    token's digest is kept; each download redirects to a fresh short-lived presigned URL and
    is counted and audited."""

    __tablename__ = "storage_shares"
    __table_args__ = (Index("ix_storage_shares_bucket_created", "bucket", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    bucket: Mapped[str] = mapped_column(String(63))
    key: Mapped[str] = mapped_column(String(1024))
    version_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    max_downloads: Mapped[int | None] = mapped_column(Integer)
    downloads: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_download_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(100))


class StorageMirror(Base):
    """A bucket mirrored, versions and metadata included, to a second bucket on the same
    endpoint (``target_endpoint`` "primary") or on ``storage.mirror_endpoint`` ("mirror"),
    incrementally and on a schedule (controlplane/storage/mirror.py)."""

    __tablename__ = "storage_mirrors"
    __table_args__ = (UniqueConstraint("bucket", "target_endpoint", "target_bucket"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    bucket: Mapped[str] = mapped_column(String(63), index=True)
    target_endpoint: Mapped[str] = mapped_column(String(20))  # primary | mirror
    target_bucket: Mapped[str] = mapped_column(String(63))
    interval_s: Mapped[int | None] = mapped_column(Integer)  # none: run on demand only
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_ok_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_report: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)  # copied, bytes, skipped, ...
    created_at: Mapped[datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(100))


class StorageMirrorVersion(Base):
    """One source version (or delete marker) a mirror has copied (migration 0010): what makes
    a mirror incremental. A listing of the target cannot tell, since S3 lists no metadata and
    the target's version ids are its own; ``version_id`` is "null" in an unversioned source,
    where ``etag`` tells an overwrite."""

    __tablename__ = "storage_mirror_versions"

    mirror_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    version_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    etag: Mapped[str | None] = mapped_column(String(100))  # none: a delete marker
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    last_modified: Mapped[datetime] = mapped_column(DateTime)  # the source's
    mirrored_at: Mapped[datetime] = mapped_column(DateTime)


class StorageDrill(Base):
    """A restore drill (controlplane/storage/drill.py): a mirror restored into a fresh bucket
    and every object's checksum compared with the source's, with the RPO and RTO measured."""

    __tablename__ = "storage_drills"
    __table_args__ = (Index("ix_storage_drills_bucket_started", "bucket", "started_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    bucket: Mapped[str] = mapped_column(String(63))  # the source bucket
    mirror_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    restored_bucket: Mapped[str] = mapped_column(String(63))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    state: Mapped[str] = mapped_column(String(20))  # passed | failed (the row is added at the end)
    objects: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    mismatches: Mapped[list[dict[str, Any]]] = mapped_column(JSONDoc, default=list)  # first few
    rpo_s: Mapped[float | None] = mapped_column(Float)
    # The RPO the data shows (migration 0010): drill start minus the oldest source change the
    # restore lacked (0 when it lacked none).
    rpo_data_s: Mapped[float | None] = mapped_column(Float)
    rto_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))
