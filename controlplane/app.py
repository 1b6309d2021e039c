"""The ASGI application: API, console and health endpoints in one process."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import IntegrityError
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import WebSocketRoute

import console
from console import errors as console_errors
from console import live, routes
from console.limits import LoginLimiter
from console.security_headers import SecurityHeaders
from console.session import LoginRequired, console_identity
from controlplane import __version__, auth, telemetry, tracing
from controlplane.api import (
    actions,
    agents,
    audit_routes,
    backend_metrics,
    catalog,
    events,
    health,
    ingest,
    leader_routes,
    messaging,
    messaging_admin,
    messaging_dead,
    messaging_publish,
    metrics,
    problems,
    realtime,
    rules,
    settings_routes,
    storage,
    storage_admin,
    storage_analytics,
    storage_backup,
    storage_shares,
    task_control,
    task_schedules,
    tasks,
    tokens,
    webhooks,
)
from controlplane.api.deps import VIEWER, authenticate, refuse_nul_bytes
from controlplane.loops.control import ControlLoop
from controlplane.loops.store_maintenance import StoreMaintenance
from controlplane.messaging.archive import Archiver
from controlplane.messaging.backup import BackupLoop, BackupManagement
from controlplane.messaging.connection import MessagingRuntime
from controlplane.messaging.connection import runtime as messaging_runtime
from controlplane.notify import CHANNELS, NOTIFIER, Listener
from controlplane.realtime.connection import Endpoint as RealtimeEndpoint
from controlplane.realtime.hub import Hub
from controlplane.realtime.layer import configure_django
from controlplane.realtime.protocol import FORBIDDEN_ORIGIN
from controlplane.realtime.runtime import Realtime
from controlplane.realtime.tokens import Grant
from controlplane.schemas.ingest import IngestBatchIn
from controlplane.settings import Settings
from controlplane.storage.client import Storage
from controlplane.storage.loop import StorageLoop
from controlplane.store.db import make_engine, make_read_sessionmaker, make_sessionmaker
from controlplane.tasks import make_celery
from controlplane.tasks.monitor import TaskMonitor
from controlplane.tasks.operations import TaskRuntime
from controlplane.users import RANK

log = logging.getLogger("coreplane.serve")


def _bootstrap_credentials(app: FastAPI, settings: Settings) -> tuple[str, str]:
    """Load (or on first start create) the admin token digest and the session secret."""

    def load() -> tuple[str, str | None, str]:
        with app.state.sessionmaker.begin() as session:
            token_digest, new_token = auth.admin_token_digest(session, settings.admin_token)
            return token_digest, new_token, auth.session_secret(session, settings.server.session_secret)

    try:
        token_digest, new_token, secret = load()
    except IntegrityError:  # another replica created them at the same moment: read those
        token_digest, new_token, secret = load()
    if new_token:
        # Printed once: only its digest is stored.
        print(f"coreplane: generated admin token (shown once, store it now): {new_token}", flush=True)
    return token_digest, secret


def _answer_waiters_on_stop(app: FastAPI) -> None:
    """On SIGTERM/SIGINT, long polls and blocking queries answer at once (they check
    ``app.state.stopping``) instead of being cancelled by uvicorn's graceful-shutdown
    timeout, which would hand their clients a 500. Chained in front of uvicorn's own
    handler, which stays in charge of the shutdown (and restores the handlers after)."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach only the main thread; a server in a thread has none
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        app.state.stopping = True
        app.state.realtime_hub.drain()  # before uvicorn closes the sockets: "reconnect", then 1012
        for channel in CHANNELS:
            NOTIFIER.fire(channel)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if callable(previous):

            def handler(signum: int, frame: Any, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(stopping)
                previous(signum, frame)

            signal.signal(sig, handler)


def _task_runtime(settings: Settings) -> TaskRuntime | None:
    """The Celery app the task routes and the leader's task operations and workflows use,
    when a broker is configured (`make run` has none: task writes answer "not configured")."""
    if not (settings.tasks.broker_url or settings.rabbitmq.url):
        return None
    return TaskRuntime(make_celery(settings), settings.tasks)


def _task_monitor(engine: Any, settings: Settings, runtime: TaskRuntime | None) -> TaskMonitor | None:
    """The thread recording Celery's events, when capturing them and a broker is configured."""
    if runtime is None or not settings.tasks.capture_events:
        return None
    return TaskMonitor(engine, settings, runtime.app)


def _archiver(engine: Any, settings: Settings, runtime: MessagingRuntime | None) -> Archiver | None:
    """The thread archiving dead letters into the store, when archiving with a broker."""
    if runtime is None or not settings.messaging.archive:
        return None
    return Archiver(engine, runtime)


def _backup_loop(engine: Any, settings: Settings, runtime: MessagingRuntime | None) -> BackupLoop | None:
    """Scheduled definition backups, when an interval and a directory or bucket are set."""
    messaging = settings.messaging
    targets = messaging.backup_dir or messaging.backup_bucket
    if runtime is None or not messaging.backup_interval_s or not targets:
        return None
    return BackupLoop(engine, settings, lambda: BackupManagement.of(runtime))


class _RedactShareTokens(logging.Filter):
    """A share link's path is its credential: the access log shows ``/s/<redacted>`` instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and str(args[2]).startswith("/s/"):
            record.args = (*args[:2], "/s/<redacted>", *args[3:])
        return True


_REDACT_SHARE_TOKENS = _RedactShareTokens()


def create_app(settings: Settings) -> FastAPI:
    """Build the app. The store must already be migrated (`coreplane migrate`)."""
    tracing.setup(settings.tracing)
    engine = make_engine(settings.database_url)
    tracing.instrument_engine(engine)

    maintenance = StoreMaintenance(engine, settings.retention, settings.tasks, messaging=settings.messaging)
    task_runtime = _task_runtime(settings)
    monitor = _task_monitor(engine, settings, task_runtime)
    mq_runtime = messaging_runtime(settings)
    storage_runtime = Storage.of(settings)  # None without an S3 endpoint
    control = ControlLoop(  # the leader carries out storage.restore with storage_runtime
        engine, settings.control, task_runtime, messaging=mq_runtime, storage=storage_runtime
    )
    archiver = _archiver(engine, settings, mq_runtime)
    backups = _backup_loop(engine, settings, mq_runtime)
    listener = Listener(settings.database_url) if engine.dialect.name == "postgresql" else None
    # Each worker process builds its app: the filter is on in every one (added once).
    logging.getLogger("uvicorn.access").addFilter(_REDACT_SHARE_TOKENS)
    storage_loop = (
        StorageLoop(engine, storage_runtime, lambda: control.leadership.is_leader)
        if storage_runtime
        else None
    )
    configure_django(settings.server.channel_layer_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Today's partitions must exist before the first write.
        await asyncio.to_thread(maintenance.run_once)
        loop = asyncio.create_task(maintenance.run_forever(settings.retention.interval_s))
        if listener is not None:
            listener.start()
        control.start()
        if monitor is not None:
            monitor.start()
        if archiver is not None:
            archiver.start()
        if backups is not None:
            backups.start()
        if storage_loop is not None:
            storage_loop.start()
        _answer_waiters_on_stop(app)
        await app.state.realtime_hub.start()
        stop_live = asyncio.Event()
        bridge = asyncio.create_task(live.bridge(stop_live, settings.server.live_tick_s))
        yield
        stop_live.set()
        bridge.cancel()
        app.state.realtime_hub.drain()
        await app.state.realtime_hub.stop()
        loop.cancel()
        await asyncio.to_thread(control.stop)
        if monitor is not None:
            await asyncio.to_thread(monitor.stop)
        if archiver is not None:
            await asyncio.to_thread(archiver.stop)
        if backups is not None:
            await asyncio.to_thread(backups.stop)
        if storage_loop is not None:
            await asyncio.to_thread(storage_loop.stop)
        if listener is not None:
            listener.stop()
        engine.dispose()

    app = FastAPI(
        title="coreplane",
        version=__version__,
        summary="Observability-first control plane for an application's core services.",
        lifespan=lifespan,
        # The schema needs a credential like every other API route; the interactive docs
        # would load their JavaScript from a CDN, so they are off.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.stopping = False
    app.state.control = control
    app.state.task_monitor = monitor  # None when not capturing task events
    app.state.task_runtime = task_runtime  # None without a broker
    app.state.messaging = mq_runtime  # None without a broker
    app.state.mq_archiver = archiver  # None when not archiving dead letters
    app.state.storage = storage_runtime  # None without an S3 endpoint
    app.state.storage_loop = storage_loop
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.read_sessionmaker = make_read_sessionmaker(engine)  # for GETs: no write lock
    app.state.metrics_registry = telemetry.app_registry(
        engine, leads=lambda: control.leadership.is_leader, websockets=lambda: len(live.CONNECTIONS)
    )
    app.state.admin_token_digest, secret = _bootstrap_credentials(app, settings)
    app.state.login_limiter = LoginLimiter()
    app.state.realtime = Realtime.of(settings, secret)
    app.state.realtime_hub = Hub(app.state.realtime)

    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie="coreplane_session",
        same_site="strict",
        https_only=settings.server.secure_cookies,
        max_age=12 * 3600,
    )
    problems.install(app, page=console_errors.page)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> RedirectResponse:
        # HX-Redirect makes htmx load the login page instead of swapping it into a block.
        return RedirectResponse("/login", status_code=303, headers={"HX-Redirect": "/login"})

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(VIEWER)])
    def openapi() -> dict:
        return app.openapi()

    app.include_router(health.router)
    app.include_router(backend_metrics.router)
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(refuse_nul_bytes), Depends(authenticate)])
    for router in (
        ingest.router,
        metrics.router,
        events.router,
        settings_routes.router,
        agents.router,
        tokens.router,
        actions.router,
        catalog.router,
        rules.router,
        leader_routes.router,
        audit_routes.router,
        # Fixed paths (/tasks/schedules, /tasks/workflows) before /tasks/{task_id}.
        task_schedules.router,
        task_control.router,
        tasks.router,
        messaging_dead.router,
        messaging_admin.router,
        messaging_publish.router,
        messaging.router,
        realtime.router,
        # Fixed paths (/storage/buckets, /shares, /mirrors, ...) before /storage/{bucket}/...
        storage_admin.router,
        storage_shares.router,
        storage_backup.router,
        storage_analytics.router,
        storage.router,
    ):
        api.include_router(router)
    app.include_router(api)
    # Its own credential (the webhook token): Alertmanager holds no coreplane token.
    app.include_router(webhooks.router, prefix="/api/v1", dependencies=[Depends(refuse_nul_bytes)])
    # A share link's token is its credential: a browser follows it with no coreplane login.
    app.include_router(storage_shares.public, dependencies=[Depends(refuse_nul_bytes)])
    _add_component_schemas(app)
    for module in routes.MODULES:
        app.include_router(module.router)
    app.router.routes.append(WebSocketRoute("/ws/console", live.endpoint()))
    app.router.routes.append(WebSocketRoute("/ws/rt", RealtimeEndpoint(_console_grant)))
    app.mount("/static", StaticFiles(directory=Path(console.__file__).parent / "static"), name="static")
    app.add_middleware(SecurityHeaders)  # CSP, nosniff, framing: every answer, pages and API
    tracing.instrument_app(app)
    return app


def _console_grant(scope: dict) -> Grant | int | None:
    """A console page's `/ws/rt`: its session (viewers join, operators publish too), from a
    page of the same origin only."""
    identity = console_identity(scope["app"], dict(scope.get("session") or {}))
    if identity is None:
        return None
    if not live.same_origin(scope):
        return FORBIDDEN_ORIGIN
    publish = ("*",) if RANK[identity.role] >= RANK["operator"] else ()
    return Grant(f"console:{identity.username}", ("*",), publish, None)


def _add_component_schemas(app: FastAPI) -> None:
    """Routes that parse their own body (ingest: gzip, atomic errors) declare it by $ref;
    put the referenced models into the schema's components."""
    default_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = default_openapi()
        body = IngestBatchIn.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(body.pop("$defs", {}))
        components["IngestBatchIn"] = body
        problems.document(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_environment() -> FastAPI:
    """The app factory each `coreplane serve --workers N` process calls."""
    from controlplane.settings import load_settings

    return create_app(load_settings())
