"""One settings tree for every coreplane process (DESIGN.md §4).

Environment variables use the prefix ``COREPLANE_`` and ``__`` between nested
levels, e.g. ``COREPLANE_REDIS__URL``. ``COREPLANE_DATABASE_URL`` and
``COREPLANE_ADMIN_TOKEN`` are top-level names other tools rely on. A backend
whose address is unset is "not configured", which is never an error.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

VAR_DIR = Path("var")


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address `coreplane serve` listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port `coreplane serve` listens on.")
    public_url: str | None = Field(
        None, description="URL operators use to reach the console; derived from host/port if unset."
    )
    session_secret: str | None = Field(
        None,
        description="Key signing console cookies; generated and kept in the store if unset.",
        repr=False,
    )
    secure_cookies: bool = Field(
        False, description="Mark console cookies Secure (set when the console is served over TLS)."
    )
    workers: int = Field(
        1, ge=1, le=64, description="Server processes (on SQLite keep 1: one writer at a time)."
    )
    max_header_bytes: int = Field(
        32 * 1024,
        ge=4096,
        le=1024 * 1024,
        description="Largest request line plus headers `coreplane serve` reads; 431 past it.",
    )
    probe_timeout_s: float = Field(
        2.0, gt=0, le=30, description="Timeout of each backend reachability probe on the console."
    )
    live_tick_s: float = Field(
        5.0,
        gt=0,
        le=86400,
        description="Seconds between the live console's refreshes for what time alone changes "
        "(a silent agent, a sparkline's window); changes are pushed at once regardless.",
    )
    channel_layer_url: str | None = Field(
        None,
        description="Redis URL of the console's Django Channels layer; in memory (per process) when unset.",
        repr=False,
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDRs of reverse proxies whose X-Forwarded-For/-Proto are believed "
        '(JSON list, e.g. ["10.0.0.5", "10.1.0.0/16"]); empty: the TCP peer is the client.',
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return value


class PostgresSettings(BaseModel):
    url: str | None = Field(
        None,
        description="A PostgreSQL the agents watch (the store is COREPLANE_DATABASE_URL).",
        repr=False,
    )


class RedisSettings(BaseModel):
    url: str | None = Field(None, description="Primary Redis, e.g. redis://127.0.0.1:6379/0.")
    replica_urls: list[str] = Field(default_factory=list, description="Redis replicas.")
    sentinel_addrs: list[str] = Field(
        default_factory=list, description="Redis Sentinel host:port list (failover yardstick)."
    )
    sentinel_master: str = Field("coreplane", description="Name Sentinel monitors the primary as.")


class MemcachedSettings(BaseModel):
    servers: list[str] = Field(
        default_factory=list, description="Memcached nodes as host:port, e.g. 127.0.0.1:11211."
    )


class RabbitMQSettings(BaseModel):
    url: str | None = Field(
        None, description="AMQP URL, e.g. amqp://user:pass@127.0.0.1:5672/%2F.", repr=False
    )
    management_url: str | None = Field(
        None,
        description="Management API base URL, e.g. http://user:pass@127.0.0.1:15672.",
        repr=False,
    )
    prometheus_url: str | None = Field(None, description="RabbitMQ's Prometheus endpoint.")


class ElasticsearchSettings(BaseModel):
    url: str | None = Field(None, description="Elasticsearch base URL, e.g. http://127.0.0.1:9200.")
    username: str | None = Field(None, description="Basic-auth user, e.g. elastic.")
    password: str | None = Field(None, description="Basic-auth password.", repr=False)


class S3Settings(BaseModel):
    endpoint: str | None = Field(None, description="S3 API endpoint as host:port.")
    access_key: str | None = Field(None, description="S3 access key.")
    secret_key: str | None = Field(None, description="S3 secret key.", repr=False)
    secure: bool = Field(False, description="Use HTTPS to reach the S3 endpoint.")


class HAProxySettings(BaseModel):
    socket: str | None = Field(None, description="Path of HAProxy's admin runtime socket.")
    metrics_url: str | None = Field(None, description="HAProxy Prometheus exporter URL.")


class PrometheusSettings(BaseModel):
    url: str | None = Field(None, description="Prometheus base URL, e.g. http://127.0.0.1:9090.")


class AlertmanagerSettings(BaseModel):
    url: str | None = Field(None, description="Alertmanager base URL, e.g. http://127.0.0.1:9093.")


class WebhookSettings(BaseModel):
    alertmanager_token: str | None = Field(
        None,
        description="Bearer token Alertmanager (or Grafana) sends to POST /api/v1/webhooks/alertmanager; "
        "the endpoint answers 503 while it is unset.",
        repr=False,
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest webhook body accepted (413 past it)."
    )
    max_alerts: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Alerts in one webhook payload (413 past it; split bigger deliveries). Alertmanager's "
        "webhook_config max_alerts keeps it under this (it counts the alerts left out in truncatedAlerts).",
    )


class IngestSettings(BaseModel):
    max_items: int = Field(10_000, ge=1, description="Metric points plus events in one batch.")
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest request body, before and after gunzip."
    )
    max_tags: int = Field(32, ge=0, description="Tags on one metric point.")
    max_tag_key_length: int = Field(64, ge=1, description="Characters in a tag key.")
    max_tag_value_length: int = Field(256, ge=1, description="Characters in a tag value.")
    max_details_bytes: int = Field(32 * 1024, ge=64, description="JSON size of an event's details.")
    max_future_skew_s: float = Field(
        300, ge=0, description="How far past the server's clock a timestamp may be."
    )


class RetentionSettings(BaseModel):
    raw_days: int = Field(30, ge=1, description="Days raw metric points and events are kept.")
    metric_type_days: dict[str, int] = Field(
        default_factory=dict,
        description="Per metric_type retention in days, overriding raw_days (JSON object).",
    )
    rollup_1m_days: int = Field(90, ge=1, description="Days 1-minute roll-ups are kept.")
    rollup_1h_days: int = Field(730, ge=1, description="Days 1-hour roll-ups are kept.")
    actions_days: int = Field(
        90, ge=1, description="Days a finished action is kept, with its steps and audit trail."
    )
    evaluations_days: int = Field(30, ge=1, description="Days rule evaluations (fired, suppressed) are kept.")
    partitions_ahead_days: int = Field(
        3, ge=1, le=60, description="Daily partitions created ahead of time (PostgreSQL)."
    )
    interval_s: float = Field(
        600, gt=0, description="Seconds between two runs of the partition/retention loop."
    )


class TaskRetrySettings(BaseModel):
    """The retry policy of every task built on coreplane's base class; a task overrides any
    of it with its own attributes (``max_retries=``, ``retry_backoff=``, ...)."""

    max_retries: int = Field(3, ge=0, le=100, description="Retries after the first attempt.")
    backoff_s: float = Field(
        1.0, gt=0, le=3600, description="First retry delay; each later one doubles (exponential)."
    )
    backoff_max_s: float = Field(600.0, gt=0, le=86400, description="Longest delay between two attempts.")
    jitter: bool = Field(
        True, description="Draw each delay at random from [0, the exponential delay] (full jitter)."
    )


class TasksSettings(BaseModel):
    broker_url: str | None = Field(
        None, description="Celery broker; the RabbitMQ URL when unset.", repr=False
    )
    result_backend: str | None = Field(None, description="Celery result backend; the Redis URL when unset.")
    flower_basic_auth: str | None = Field(
        None, description="user:password that Flower requires (HTTP basic auth).", repr=False
    )
    flower_url: str | None = Field(
        None, description="Where operators reach `coreplane flower`; the console's tasks page links it."
    )
    modules: list[str] = Field(
        default_factory=list,
        description="Python modules that define the application's tasks (JSON list), imported by the "
        'worker, beat and the control plane, e.g. ["myapp.tasks"].',
    )
    queues: dict[str, int] = Field(
        default_factory=lambda: {"celery": 10},
        description="Queues to declare, each with its x-max-priority (1-255; RabbitMQ advises at most "
        "10), as a JSON object. The first is the default queue.",
    )
    routes: dict[str, str] = Field(
        default_factory=dict,
        description='Task name (or glob, e.g. "mail.*") -> queue, as a JSON object; unrouted tasks '
        "go to the default queue.",
    )
    priorities: dict[str, int] = Field(
        default_factory=dict,
        description="Task name -> default priority (0-255, higher first, capped by the queue's "
        "x-max-priority), as a JSON object; a call's priority= overrides it.",
    )
    default_priority: int = Field(
        0, ge=0, le=255, description="Priority of a task with none of its own or in the call."
    )
    retry: TaskRetrySettings = Field(default_factory=TaskRetrySettings)
    prefetch_multiplier: int = Field(
        1,
        ge=1,
        le=1000,
        description="Messages each worker process holds ahead (Celery's worker_prefetch_multiplier). 1 "
        "keeps priorities exact and a long task from holding others back; short tasks run faster "
        "with 4 or more.",
    )
    soft_time_limit_s: float | None = Field(
        300.0, gt=0, description="Seconds before SoftTimeLimitExceeded is raised inside a task."
    )
    time_limit_s: float | None = Field(
        360.0, gt=0, description="Seconds before the worker kills a task's process (hard limit)."
    )
    dead_letter_queue: str = Field(
        "coreplane.dead",
        min_length=1,
        max_length=200,
        description="Queue (behind the exchange of the same name + '.dlx') holding tasks that failed "
        "their last attempt.",
    )
    capture_events: bool = Field(
        True, description="Whether `coreplane serve` captures Celery events into the store."
    )
    events_queue: str = Field(
        "coreplane.task-events",
        min_length=1,
        max_length=200,
        description="Durable queue the control plane reads Celery events from, so none are lost "
        "while it restarts.",
    )
    history_days: float = Field(7.0, gt=0, le=3650, description="Days a finished task's record is kept.")
    history_max_rows: int = Field(
        1_000_000, ge=1000, description="Task records kept at most; the oldest go first."
    )
    redact: list[str] = Field(
        default_factory=lambda: ["password", "secret", "token", "api_key", "authorization"],
        description="Keyword argument names whose values are stored and shown as '***' (JSON list; "
        "case-insensitive substring match).",
    )
    redact_args: bool = Field(False, description="Store no positional arguments at all (only their count).")

    @field_validator("queues")
    @classmethod
    def _priorities_in_range(cls, value: dict[str, int]) -> dict[str, int]:
        if not value:
            raise ValueError("needs at least one queue")
        for name, top in value.items():
            if not 1 <= top <= 255:
                raise ValueError(f"queue {name!r}: x-max-priority must be 1-255, not {top}")
        return value


class MessagingRetrySettings(BaseModel):
    """The default retry of a queue whose definition has ``retry: true`` (a queue may give
    its own): ``attempts`` deliveries in all, the n-th retry waiting
    ``backoff_s * multiplier**(n-1)`` (at most ``backoff_max_s``) in a TTL retry queue."""

    attempts: int = Field(4, ge=1, le=20, description="Deliveries in all, the first included.")
    backoff_s: float = Field(1.0, gt=0, le=86400, description="Wait before the first retry.")
    multiplier: float = Field(2.0, ge=1, le=10, description="Each later wait is this many times longer.")
    backoff_max_s: float = Field(3600.0, gt=0, le=86400 * 7, description="Longest wait between two tries.")


class MessagingSettings(BaseModel):
    """Messaging on RabbitMQ (controlplane.messaging): the topology applications use, their
    message schemas, publishing and consuming defaults, dead-letter archive and backups."""

    url: str | None = Field(None, description="AMQP URL; the RabbitMQ URL when unset.", repr=False)
    management_url: str | None = Field(
        None, description="Management API base URL; RabbitMQ's when unset.", repr=False
    )
    definition: dict[str, Any] = Field(
        default_factory=dict,
        description='The topology as a JSON object: {"exchanges": [...], "queues": [...], "bindings": '
        "[...]} (docs/messaging.md); applied with `coreplane messaging apply` or the API, as a diff first.",
    )
    schemas: list[dict[str, Any]] = Field(
        default_factory=list,
        description='Message schemas as a JSON list of {"exchange", "routing_key" (AMQP topic pattern), '
        'and "json_schema" (an object) or "model" ("package.module:PydanticModel")}.',
    )
    retry: MessagingRetrySettings = Field(default_factory=MessagingRetrySettings)
    prefetch: int = Field(10, ge=1, le=10000, description="Unacked messages a consumer holds at most.")
    confirm_timeout_s: float = Field(
        10.0, gt=0, le=300, description="Seconds publish() waits for the broker's confirm."
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, le=128 * 1024 * 1024, description="Largest body publish() accepts."
    )
    archive: bool = Field(
        True, description="Whether `coreplane serve` archives dead-lettered messages into the store."
    )
    archive_body_bytes: int = Field(
        65536, ge=0, le=16 * 1024 * 1024, description="Bytes of a dead letter's body kept in the archive."
    )
    dead_days: float = Field(30.0, gt=0, le=3650, description="Days an archived dead letter is kept.")
    backup_dir: str | None = Field(None, description="Directory scheduled definition backups go to.")
    backup_bucket: str | None = Field(
        None, description="S3 bucket scheduled definition backups go to (the S3 settings' server)."
    )
    backup_interval_s: float | None = Field(
        None, gt=0, description="Seconds between two scheduled definition backups; none when unset."
    )


class RealtimeSettings(BaseModel):
    """Realtime websockets for applications (controlplane.realtime, `/ws/rt`): rooms,
    presence, history with recovery, schemas and the limits each connection lives under."""

    redis_url: str | None = Field(
        None,
        description="Redis URL keeping presence and room history; the channel layer's when unset, "
        "in memory (one process, `make run`) when both are unset.",
        repr=False,
    )
    heartbeat_s: float = Field(
        10.0, ge=0.2, le=300,
        description="Clients send a frame (a ping at least) this often; a connection silent for 1.5 "
        "periods is closed (4408) and leaves presence, and presence a dead server held expires after 2.",
    )  # fmt: skip
    token_ttl_s: int = Field(900, ge=10, le=86400, description="Default lifetime of a realtime token.")
    history_count: int = Field(1000, ge=1, le=100_000, description="Messages kept per room at most.")
    history_age_s: float = Field(86400.0, gt=0, le=30 * 86400, description="Seconds a room message is kept.")
    frame_max_bytes: int = Field(
        65536, ge=256, le=4 * 1024 * 1024, description="Largest frame a client may send (refused past it)."
    )
    rate_per_s: float = Field(50.0, gt=0, le=100_000, description="Frames per second a connection may send.")
    rate_burst: int = Field(100, ge=1, le=100_000, description="Frames a connection may send at once.")
    max_subscriptions: int = Field(100, ge=1, le=10_000, description="Rooms one connection may be in.")
    send_queue: int = Field(
        1000, ge=10, le=1_000_000,
        description="Frames waiting for one slow client at most; past it the client is disconnected (4409).",
    )  # fmt: skip
    abuse_limit: int = Field(
        20, ge=1, le=10_000,
        description="Refused frames (too large, too fast, invalid) a connection may send per minute "
        "before it is closed (4429).",
    )  # fmt: skip
    presence_events_max: int = Field(
        100, ge=0, le=100_000,
        description="Rooms with more members present than this do not broadcast join and leave events "
        "(N members joining would cost N² frames); a presence frame still lists who is there.",
    )  # fmt: skip
    compression: bool = Field(
        False,
        description="Offer permessage-deflate on websockets. Off: a room message goes to each member "
        "compressed anew (one context per socket), which costs more CPU than the fan-out itself.",
    )
    max_connections: int = Field(50_000, ge=1, le=1_000_000, description="Open connections per process.")
    schemas: list[dict[str, Any]] = Field(
        default_factory=list,
        description='Message schemas as a JSON list of {"room": glob ("chat:*"), "json_schema": {...}}; '
        "a message must pass every schema whose glob matches its room.",
    )


class StorageSettings(BaseModel):
    """Object storage for applications (controlplane.storage, /api/v1/storage) on the S3
    server of ``s3`` (any S3 API: SeaweedFS in the harness), and its mirror for backups."""

    part_size_mb: int = Field(
        16, ge=5, le=512,
        description="Multipart part size for uploads of unknown or large length (S3's minimum is 5 MiB).",
    )  # fmt: skip
    max_object_gb: float = Field(
        50.0, gt=0, le=5000, description="Largest object an upload may store (refused past it)."
    )
    default_quota_gb: float | None = Field(
        None, gt=0, description="Quota of a bucket created without one (none: unlimited)."
    )
    presign_ttl_s: int = Field(
        60, ge=5, le=3600, description="Lifetime of the presigned URL a share link redirects to."
    )
    presign_max_s: int = Field(
        7 * 86400,
        ge=60,
        le=7 * 86400,
        description="Longest expiry a presigned URL may be given (S3's cap: 7 days).",
    )
    share_max_days: int = Field(90, ge=1, le=3650, description="Longest a share link may live.")
    loop_interval_s: float = Field(
        30.0, ge=0.2, le=3600,
        description="How often the leader checks lifecycle rules, scheduled mirrors and bucket usage.",
    )  # fmt: skip
    count_interval_s: float = Field(
        300.0, ge=1, le=86400,
        description="How often the leader counts each bucket in full (usage, versions, top prefixes).",
    )  # fmt: skip
    lifecycle_interval_s: float = Field(
        3600.0, ge=60, le=86400,
        description="How often the leader applies each bucket's lifecycle rules (they are in days).",
    )  # fmt: skip
    mirror_endpoint: str | None = Field(
        None, description="A second S3 endpoint (host:port) to mirror buckets to; the first one when unset."
    )
    mirror_access_key: str | None = Field(None, description="Access key of the mirror endpoint.")
    mirror_secret_key: str | None = Field(None, description="Secret key of the mirror endpoint.", repr=False)
    mirror_secure: bool = Field(False, description="Use HTTPS to reach the mirror endpoint.")


class ControlSettings(BaseModel):
    """The catalog's health machine, the policy engine and leader election."""

    recover_after_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="Seconds a better health (critical -> passing) must hold before the catalog shows it "
        "(flap damping); worse health applies at once.",
    )
    instance_ttl_s: float = Field(
        30.0, gt=0, le=86400, description="An instance with no report for this long turns critical."
    )
    evaluate_interval_s: float = Field(
        1.0,
        gt=0,
        le=300,
        description="Seconds between two rounds of the policy engine when no event wakes it earlier.",
    )
    lease_s: float = Field(
        5.0,
        ge=1,
        le=300,
        description="Leader lease: the leader renews it every third of this; a follower takes over "
        "within two lease periods of the leader's death.",
    )
    action_timeout_s: float = Field(
        60.0, gt=0, le=86400, description="Default seconds an action may stay dispatched or running."
    )


class AgentSettings(BaseModel):
    control_plane_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL of the control plane the agent reports to."
    )
    name: str | None = Field(None, description="Agent name; the host name when unset.")
    heartbeat_interval_s: float = Field(10.0, gt=0, le=3600, description="Seconds between two heartbeats.")
    probe_interval_s: float = Field(
        10.0, gt=0, le=3600, description="Seconds between two probes of a target (without agent.yaml)."
    )
    request_timeout_s: float = Field(
        5.0, gt=0, le=120, description="Timeout of one request to the control plane."
    )


class TracingSettings(BaseModel):
    """OpenTelemetry: spans always get trace ids (stored on events and actions); they leave the
    process only when an OTLP endpoint is set."""

    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318 (/v1/traces is added to a URL "
        "without a path); unset = no exporter.",
    )
    otlp_headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers sent with every export, e.g. an API key (JSON object).",
        repr=False,
    )
    service_name: str = Field("coreplane", min_length=1, description="service.name of this process's spans.")
    sample_ratio: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of new traces recorded; a trace begun elsewhere (an agent's push) follows "
        "the sender's decision.",
    )


class Settings(BaseSettings):
    """Everything a coreplane process reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="COREPLANE_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    database_url: str = Field(
        f"sqlite:///{VAR_DIR}/coreplane.db",
        description="SQLAlchemy URL of the store: sqlite:///path or postgresql+psycopg://...",
    )
    admin_token: str | None = Field(
        None,
        description="Bootstrap admin credential; generated and printed once when unset.",
        repr=False,
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level of every coreplane process."
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    tasks: TasksSettings = Field(default_factory=TasksSettings)
    messaging: MessagingSettings = Field(default_factory=MessagingSettings)
    realtime: RealtimeSettings = Field(default_factory=RealtimeSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    memcached: MemcachedSettings = Field(default_factory=MemcachedSettings)
    rabbitmq: RabbitMQSettings = Field(default_factory=RabbitMQSettings)
    elasticsearch: ElasticsearchSettings = Field(default_factory=ElasticsearchSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    haproxy: HAProxySettings = Field(default_factory=HAProxySettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    alertmanager: AlertmanagerSettings = Field(default_factory=AlertmanagerSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)

    @field_validator("database_url")
    @classmethod
    def _known_dialect(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError(
                f"must start with sqlite:/// or postgresql+psycopg://, got {value.split(':', 1)[0]!r}"
            )
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")


class SettingsError(Exception):
    """Settings failed validation; the message says which variable to fix."""


def load_settings(**overrides: Any) -> Settings:  # Any: validated by Settings itself
    """Build the settings tree, turning a validation error into one readable message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            path = "__".join(str(p) for p in err["loc"]).upper()
            lines.append(f"  COREPLANE_{path}: {err['msg']}")
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None
