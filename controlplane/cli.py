"""The `coreplane` command. Heavy imports happen inside each command, so `coreplane
agent` runs on the small agent install."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from controlplane.settings import Settings, SettingsError, load_settings

app = typer.Typer(
    help="coreplane: an observability-first control plane for an application's core services.",
    no_args_is_help=True,
    add_completion=False,
)

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _settings(**overrides: object) -> Settings:
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        typer.echo(f"coreplane: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings


def _check_messaging(settings: Settings) -> None:
    """Refuse to start on a messaging definition or schema that does not load, naming the
    entry to fix, rather than on the first publish."""
    from controlplane.errors import Rejected
    from controlplane.messaging.connection import runtime
    from controlplane.messaging.validation import Schemas

    try:
        if runtime(settings) is not None:
            Schemas(settings.messaging.schemas)
    except Rejected as exc:
        typer.echo(f"coreplane: invalid messaging configuration: {exc}", err=True)
        raise typer.Exit(2) from None


def _var_dir() -> Path:
    """Where the local files go: ``COREPLANE_VAR`` (as scripts/lib.sh reads it), else ./var."""
    return Path(os.environ.get("COREPLANE_VAR") or "var")


def _private_files(*existing: Path) -> None:
    """Files this process creates are readable by its own user only: the store holds
    password hashes and the cookie-signing key, the agent's files its token. ``existing``
    files (and a folder's files) made before this rule get the same modes. A folder that
    exists keeps its own mode (var/ may hold services run as other users, who must
    traverse it); the ones created from here on are 0700."""
    os.umask(0o077)
    for path in existing:
        if path.is_dir():
            path.chmod(0o700)
            for inner in path.rglob("*"):
                inner.chmod(0o700 if inner.is_dir() else 0o600)
        elif path.exists():
            path.chmod(0o600)


def _store_files(database_url: str) -> list[Path]:
    """The SQLite store's files (none for PostgreSQL)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return []
    return [Path(url.database + suffix) for suffix in ("", "-wal", "-shm")]


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(help="Listen address [default: COREPLANE_SERVER__HOST or 127.0.0.1]."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Listen port [default: COREPLANE_SERVER__PORT or 8000].")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Server processes [default: COREPLANE_SERVER__WORKERS or 1].")
    ] = None,
) -> None:
    """Serve the API, the console and /metrics (the store must be migrated first)."""
    import uvicorn

    from controlplane.app import create_app
    from controlplane.http_limits import BoundedHeadProtocol
    from controlplane.store.migrate import current_revision, head_revision

    settings = _settings()
    _private_files(*_store_files(settings.database_url))
    if host is not None:
        settings.server.host = host
    if port is not None:
        settings.server.port = port
    if workers is not None:
        settings.server.workers = workers
    current, head = current_revision(settings.database_url), head_revision()
    if current != head:
        typer.echo(
            f"coreplane: the store is at revision {current or 'none'}, the code needs {head}: "
            "run `coreplane migrate` first",
            err=True,
        )
        raise typer.Exit(2)
    _check_messaging(settings)
    url = settings.server.public_url or f"http://{settings.server.host}:{settings.server.port}/"
    if settings.server.workers > 1:
        # Each worker process builds the app from the same environment.
        os.environ["COREPLANE_SERVER__HOST"] = settings.server.host
        os.environ["COREPLANE_SERVER__PORT"] = str(settings.server.port)
        create_app(settings)  # on first start, generate (and print) the credentials once, here
        application: str | Callable[..., Any] = "controlplane.app:app_from_environment"
    else:
        application = create_app(settings)
    typer.echo(f"coreplane: console at {url}", err=True)
    uvicorn.run(
        application,
        factory=settings.server.workers > 1,
        workers=settings.server.workers,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.log_level,
        # X-Forwarded-For only from configured proxies: believed from anyone (uvicorn's
        # default trusts 127.0.0.1), it let a client pick the address the login limits
        # and the audit log see.
        proxy_headers=bool(settings.server.trusted_proxies),
        forwarded_allow_ips=settings.server.trusted_proxies or [],
        # Long polls and blocking queries may wait for a minute; a stop should not.
        timeout_graceful_shutdown=5,
        # httptools with a cap on the request head (it has none of its own): 431 past it.
        http=BoundedHeadProtocol,
        h11_max_incomplete_event_size=settings.server.max_header_bytes,
        # A realtime frame over the setting gets an error frame; one over this, 1009 and the end.
        ws_max_size=max(1 << 20, 4 * settings.realtime.frame_max_bytes),
        ws_per_message_deflate=settings.realtime.compression,
    )


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target Alembic revision.")] = "head",
) -> None:
    """Apply the store's schema migrations (SQLite or PostgreSQL)."""
    from controlplane.store.migrate import current_revision, upgrade

    settings = _settings()
    _private_files(*_store_files(settings.database_url))
    upgrade(settings.database_url, revision)
    typer.echo(f"coreplane: store at revision {current_revision(settings.database_url)}")


@app.command()
def agent(
    config: Annotated[
        Path | None,
        typer.Option(
            help="agent.yaml; without it, the host and every backend in the environment.", dir_okay=False
        ),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Probe every target once, send, exit.")] = False,
    print_only: Annotated[
        bool, typer.Option("--print", help="With --once: print the batch instead of sending it.")
    ] = False,
    discover: Annotated[
        Path | None, typer.Option(help="Probe the usual local ports and write a starter agent.yaml here.")
    ] = None,
    register: Annotated[
        bool,
        typer.Option(
            "--register",
            help="Register with COREPLANE_ADMIN_TOKEN (or check the token file) and exit; "
            "later starts need only the agent's own token file.",
        ),
    ] = False,
) -> None:
    """Run an agent: probe backends, push metrics and events, keep a spool when the control plane is away."""
    import json
    import socket

    from agents.config import ConfigError, load_config
    from agents.daemon import Agent, AgentError, cap_malloc_arenas, default_config, load_or_register

    settings = _settings()
    os.umask(0o077)  # the token file and the spool: the agent's user only
    if settings.tracing.otlp_endpoint:  # without an exporter the agent's spans would go nowhere
        from controlplane import tracing

        tracing.setup(settings.tracing.model_copy(update={"service_name": "coreplane-agent"}))
    if discover is not None:
        from agents.discover import write_starter_config

        found = write_starter_config(discover, name=settings.agent.name or socket.gethostname())
        typer.echo(
            f"coreplane: wrote {discover} with {found} target(s); review it, then run --config {discover}"
        )
        return
    try:
        agent_config = (
            load_config(config)
            if config
            # Beside the scripts' own files: COREPLANE_VAR, as scripts/lib.sh reads it.
            else default_config(settings, settings.agent.name or socket.gethostname(), _var_dir())
        )
    except ConfigError as exc:
        typer.echo(f"coreplane: {exc}", err=True)
        raise typer.Exit(2) from None
    if once and print_only:
        from agents.runtime import Buffer, TargetLoop

        buffer = Buffer()
        for target in agent_config.targets:
            loop = TargetLoop(target, buffer)
            loop.run_once()
            loop.close()
        metrics, events = buffer.drain()
        typer.echo(json.dumps({"agent": agent_config.name, "metrics": metrics, "events": events}, indent=2))
        return
    _private_files(agent_config.token_file, agent_config.spool_dir)
    try:
        identity = load_or_register(agent_config, settings.admin_token)
    except AgentError as exc:
        typer.echo(f"coreplane: {exc}", err=True)
        raise typer.Exit(2) from None
    if register:
        typer.echo(f"coreplane: agent {agent_config.name} registered; token in {agent_config.token_file}")
        return
    cap_malloc_arenas()  # before Agent starts a thread per target
    daemon = Agent(agent_config, identity)
    if once:
        for loop in daemon.loops:
            loop.run_once()
        delivered = daemon.shipper.run_once()
        ok = daemon.heartbeat.run_once()
        daemon.stop()
        pending, _ = daemon.spool.depth()
        typer.echo(f"coreplane: delivered {delivered} batch(es), {pending} left in the spool", err=True)
        raise typer.Exit(0 if ok and not pending else 1)
    signal.signal(signal.SIGTERM, lambda *_: daemon.interrupt())
    typer.echo(
        f"coreplane: agent {agent_config.name} watching {len(agent_config.targets)} target(s), "
        f"reporting to {agent_config.control_plane_url}",
        err=True,
    )
    daemon.start()
    try:
        daemon.wait()
    except KeyboardInterrupt:
        pass
    finally:
        daemon.stop()


@app.command()
def services(
    command: Annotated[str, typer.Argument(help="up | down | status")],
    names: Annotated[list[str] | None, typer.Argument(help="Services (default: all).")] = None,
) -> None:
    """Install, start, stop or inspect the local real services (scripts/services.sh)."""
    script = SCRIPTS / "services.sh"
    if not script.exists():
        typer.echo(f"coreplane: {script} not found: `services` runs from a source checkout", err=True)
        raise typer.Exit(2)
    if command not in {"up", "down", "status"}:
        typer.echo("coreplane: services takes up, down or status", err=True)
        raise typer.Exit(2)
    result = subprocess.run(["bash", str(script), command, *(names or [])], check=False)
    raise typer.Exit(result.returncode)


def _celery_or_exit(settings: Settings):
    from controlplane.tasks import make_celery

    try:
        return make_celery(settings)
    except ValueError as exc:
        typer.echo(f"coreplane: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    queues: Annotated[
        str | None,
        typer.Option(help="Comma-separated queues to consume [default: all of COREPLANE_TASKS__QUEUES]."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Worker node name, e.g. tasks-1@%h [default: celery@<host>].")
    ] = None,
    ping: Annotated[
        bool, typer.Option("--ping", help="Exit 0 if a worker answers a ping (health check).")
    ] = False,
) -> None:
    """Run a Celery worker for the application's background tasks."""
    settings = _settings()
    celery = _celery_or_exit(settings)
    if settings.tracing.otlp_endpoint:  # each pool process continues its tasks' publishers' traces
        from celery.signals import worker_process_init

        from controlplane import tracing

        worker_tracing = settings.tracing.model_copy(update={"service_name": "coreplane-worker"})
        worker_process_init.connect(lambda **_: tracing.setup(worker_tracing), weak=False)
    if ping:
        answers = celery.control.ping(timeout=3.0)
        typer.echo(f"{len(answers)} worker(s) answered")
        raise typer.Exit(0 if answers else 1)
    wanted = [q.strip() for q in (queues or ",".join(settings.tasks.queues)).split(",") if q.strip()]
    unknown = [q for q in wanted if q not in settings.tasks.queues]
    if not wanted or unknown:
        typer.echo(
            f"coreplane: --queues names {', '.join(unknown) or 'no queue'}; the declared queues are "
            f"{', '.join(settings.tasks.queues)} (COREPLANE_TASKS__QUEUES)",
            err=True,
        )
        raise typer.Exit(2)
    from controlplane.tasks import topology

    try:
        topology.declare(celery, settings.tasks, wanted)
    except ValueError as exc:
        typer.echo(f"coreplane: {exc}", err=True)
        raise typer.Exit(2) from None
    argv = ["worker", f"--concurrency={concurrency}", f"--queues={','.join(wanted)}", "--loglevel=INFO", "-E"]
    celery.worker_main(argv + ([f"--hostname={name}"] if name else []))


@app.command()
def beat() -> None:
    """Run Celery beat on the schedules in the store (one fires; others stand by for it)."""
    from controlplane.store.migrate import current_revision, head_revision
    from controlplane.tasks import beat as store_beat

    settings = _settings()
    celery = _celery_or_exit(settings)
    if current_revision(settings.database_url) != head_revision():
        typer.echo("coreplane: the store is behind the code: run `coreplane migrate` first", err=True)
        raise typer.Exit(2)
    store_beat.run(celery, settings)


@app.command()
def flower(
    port: Annotated[int, typer.Option(help="Port Flower listens on.")] = 5555,
    address: Annotated[str, typer.Option(help="Address Flower listens on.")] = "127.0.0.1",
) -> None:
    """Run Flower, the Celery monitoring UI, against the configured broker."""
    settings = _settings()
    celery = _celery_or_exit(settings)
    argv = ["flower", f"--port={port}", f"--address={address}"]
    if settings.tasks.flower_basic_auth:
        argv.append(f"--basic-auth={settings.tasks.flower_basic_auth}")
    elif address not in {"127.0.0.1", "localhost", "::1"}:
        typer.echo(
            "coreplane: set COREPLANE_TASKS__FLOWER_BASIC_AUTH to serve Flower beyond loopback",
            err=True,
        )
        raise typer.Exit(2)
    celery.start(argv)


user_app = typer.Typer(help="Console users: add, list, change a role or password, disable or enable.")
app.add_typer(user_app, name="user")


def _user_change(change) -> None:
    from controlplane.errors import Conflict, NotFound, Rejected
    from controlplane.store.db import make_engine, make_sessionmaker

    database_url = _settings().database_url
    _private_files(*_store_files(database_url))
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            change(session)
    except (Rejected, Conflict, NotFound) as exc:
        typer.echo(f"coreplane: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


def _read_password(prompt: str, from_stdin: bool) -> str:
    """A password from standard input's first line, or asked for twice without echo."""
    import sys

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt(prompt, hide_input=True, confirmation_prompt=True)


@user_app.command("add")
def user_add(
    username: str,
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
) -> None:
    """Add a console user (the password is asked for, or read from stdin)."""
    from controlplane import users

    password = _read_password("Password", password_stdin)
    _user_change(lambda s: users.create_user(s, username=username, password=password, role=role, actor="cli"))
    typer.echo(f"coreplane: added {username} ({role})")


@user_app.command("list")
def user_list() -> None:
    """Users, their roles and whether they are disabled."""
    from sqlalchemy import select

    from controlplane.store.models import User

    def show(session) -> None:
        for user in session.scalars(select(User).order_by(User.username)):
            typer.echo(f"{user.username}\t{user.role}\t{'disabled' if user.disabled else 'active'}")

    _user_change(show)


@user_app.command("set-role")
def user_set_role(username: str, role: str) -> None:
    """Change a user's role."""
    from controlplane import users

    _user_change(lambda s: users.set_role(s, username=username, role=role, actor="cli"))
    typer.echo(f"coreplane: {username} is now {role}")


@user_app.command("passwd")
def user_passwd(
    username: str,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
) -> None:
    """Set a user's password; the user's open console sessions end."""
    from controlplane import users

    password = _read_password("New password", password_stdin)
    _user_change(lambda s: users.set_password(s, username=username, password=password, actor="cli"))
    typer.echo(f"coreplane: new password for {username}; their console sessions ended")


@user_app.command("disable")
def user_disable(
    username: str, enable: Annotated[bool, typer.Option(help="Enable instead.")] = False
) -> None:
    """Disable (or, with --enable, enable) a user."""
    from controlplane import users

    _user_change(lambda s: users.set_disabled(s, username=username, disabled=not enable, actor="cli"))
    typer.echo(f"coreplane: {username} is {'enabled' if enable else 'disabled'}")


cache_app = typer.Typer(help="Back up and restore a cache namespace (values and remaining TTLs).")
app.add_typer(cache_app, name="cache")


def _cache_clients(settings: Settings, location: str):
    import redis

    if not settings.redis.url:
        typer.echo("coreplane: COREPLANE_REDIS__URL is unset: the cache's Redis is needed", err=True)
        raise typer.Exit(2)
    s3 = None
    if location.startswith("s3://"):
        if not settings.s3.endpoint:
            typer.echo("coreplane: COREPLANE_S3__ENDPOINT is unset: needed for an s3:// location", err=True)
            raise typer.Exit(2)
        from minio import Minio

        s3 = Minio(settings.s3.endpoint, access_key=settings.s3.access_key, secret_key=settings.s3.secret_key,
                   secure=settings.s3.secure)  # fmt: skip
    return redis.Redis.from_url(settings.redis.url), s3


@cache_app.command("export")
def cache_export(
    namespace: Annotated[str, typer.Argument(help="The cache namespace to back up.")],
    to: Annotated[str, typer.Option(help="A file path, or s3://bucket/object.")],
) -> None:
    """Write a namespace's entries (and the tag versions they were written under)."""
    from controlplane.cache import backup

    client, s3 = _cache_clients(_settings(), to)
    if s3 is not None:
        bucket, _, name = to.removeprefix("s3://").partition("/")
        count = backup.export_to_s3(client, namespace, s3, bucket, name or f"{namespace}.ndjson")
    else:
        with Path(to).open("wb") as out:
            count = backup.export_namespace(client, namespace, out)
    typer.echo(f"coreplane: exported {count} entr{'y' if count == 1 else 'ies'} of {namespace!r} to {to}")


@cache_app.command("import")
def cache_import(source: Annotated[str, typer.Argument(help="A file path, or s3://bucket/object.")]) -> None:
    """Restore entries from an export, with their remaining TTLs, to warm a cold cache."""
    from controlplane.cache import backup

    client, s3 = _cache_clients(_settings(), source)
    errors: tuple[type[Exception], ...] = (OSError,)
    if s3 is not None:
        from minio.error import S3Error

        errors += (S3Error,)
    try:
        if s3 is not None:
            bucket, _, name = source.removeprefix("s3://").partition("/")
            count = backup.import_from_s3(client, s3, bucket, name)
        else:
            with Path(source).open("rb") as inp:
                count = backup.import_namespace(client, inp)
    except errors as exc:
        typer.echo(f"coreplane: cannot read {source}: {getattr(exc, 'message', None) or exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"coreplane: imported {count} entr{'y' if count == 1 else 'ies'} from {source}")


messaging_app = typer.Typer(
    help="Messaging on RabbitMQ: the topology diff and apply, definition backups and restores."
)
app.add_typer(messaging_app, name="messaging")


def _backup_management(settings: Settings):
    from controlplane.messaging.backup import BackupManagement
    from controlplane.messaging.connection import require, runtime

    return BackupManagement.of(require(runtime(settings)))


def _refused(exc: Exception) -> typer.Exit:
    """A domain error (no broker, broker down, a bad document) as a message and exit code 2."""
    typer.echo(f"coreplane: {exc}", err=True)
    return typer.Exit(2)


@messaging_app.command("export")
def messaging_export(
    to: Annotated[str | None, typer.Option(help="A new file, or s3://bucket/key; stdout when unset.")] = None,
    vhost_only: Annotated[bool, typer.Option(help="Only messaging's virtual host (no users).")] = False,
) -> None:
    """Export the definitions (users' password hashes redacted); a file is made 0600."""
    import json

    from controlplane.errors import Conflict, Rejected, Unavailable
    from controlplane.messaging import backup

    settings = _settings()
    try:
        with _backup_management(settings) as management:
            doc = backup.export(management, scope="vhost" if vhost_only else "broker")
        if to is None:
            typer.echo(json.dumps(doc, indent=1, sort_keys=True))
            return
        if to.startswith("s3://"):
            bucket, _, key = to.removeprefix("s3://").partition("/")
            where = f"s3://{bucket}/{backup.to_s3(doc, settings.s3, bucket, key=key or None)}"
        else:
            where = str(backup.write_file(doc, to))
    except (Conflict, Rejected, Unavailable, FileExistsError) as exc:
        raise _refused(exc) from None
    typer.echo(f"coreplane: exported {len(doc.get('queues', []))} queue(s) and the rest to {where}", err=True)


@messaging_app.command("import")
def messaging_import(
    source: Annotated[str, typer.Argument(help="A file written by export (or RabbitMQ's own export).")],
    yes: Annotated[bool, typer.Option("--yes", help="Load without asking.")] = False,
) -> None:
    """Load definitions into the broker (a broker-wide export) or messaging's vhost (a vhost's);
    users whose hash was redacted are left out."""
    from controlplane.errors import Conflict, Rejected, Unavailable
    from controlplane.messaging import backup

    try:
        doc = backup.read_file(source)
    except (Rejected, OSError) as exc:
        raise _refused(exc) from None
    counts = ", ".join(f"{len(doc[k])} {k}" for k in backup.SECTIONS if doc.get(k))
    redacted = [u["name"] for u in doc.get("users", []) if u.get("password_hash") == backup.REDACTED]
    typer.echo(f"coreplane: {source} holds {counts or 'nothing'}; left out (redacted): {redacted or 'none'}")
    if not yes and not typer.confirm("Load these definitions into RabbitMQ?"):
        raise typer.Exit(1)
    try:
        with _backup_management(_settings()) as management:
            backup.restore(management, doc)
    except (Conflict, Rejected, Unavailable) as exc:
        raise _refused(exc) from None
    typer.echo("coreplane: definitions loaded")


def _topology_or_exit(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call``'s answer; a domain error (no broker, a refused recreate, ...) exits 1 saying why."""
    from controlplane.errors import Conflict, NotFound, Rejected, Unavailable

    try:
        return call(*args, **kwargs)
    except (Conflict, NotFound, Rejected, Unavailable) as exc:
        typer.echo(f"coreplane: {exc}", err=True)
        raise typer.Exit(1) from None


def _show_diff(found: Any, prune: bool) -> None:
    for item in found.add:
        typer.echo(f"+ {item.kind} {item.name}")
    for change in found.change:
        what = "; ".join(f"{k} {c!r} -> {w!r}" for k, (c, w) in change.differences.items())
        typer.echo(f"~ {change.wanted.kind} {change.wanted.name} (recreate: {what})")
    for item in found.remove:
        typer.echo(f"- {item.kind} {item.name}" + ("" if prune else "  (kept without --prune)"))
    if found.empty:
        typer.echo("coreplane: the broker holds the definition", err=True)


@messaging_app.command("diff")
def messaging_diff() -> None:
    """Show what `apply` would change on RabbitMQ: + declared, ~ recreated, - removed with --prune."""
    from controlplane.messaging import topology
    from controlplane.messaging.connection import require, runtime

    settings = _settings()
    found_runtime = _topology_or_exit(lambda: require(runtime(settings)))
    found = _topology_or_exit(topology.plan, found_runtime, found_runtime.definition)
    _show_diff(found, prune=True)


@messaging_app.command("apply")
def messaging_apply(
    prune: Annotated[
        bool, typer.Option(help="Also remove what the definition lacks (not the tasks').")
    ] = False,
    force: Annotated[bool, typer.Option(help="Recreate or prune queues even if they hold messages.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Apply without asking.")] = False,
) -> None:
    """Show the diff of COREPLANE_MESSAGING__DEFINITION against RabbitMQ, then apply it once confirmed."""
    from controlplane import audit
    from controlplane.messaging import topology
    from controlplane.messaging.connection import require, runtime
    from controlplane.messaging.operations import TARGET

    settings = _settings()
    found_runtime = _topology_or_exit(lambda: require(runtime(settings)))
    found = _topology_or_exit(topology.plan, found_runtime, found_runtime.definition)
    _show_diff(found, prune)
    if found.empty or (not prune and not (found.add or found.change)):
        return
    if not yes and not typer.confirm("Apply this to RabbitMQ?"):
        raise typer.Exit(1)
    done = _topology_or_exit(topology.apply, found_runtime, found_runtime.definition, prune=prune,
                             force=force)  # fmt: skip
    details = {"diff": done.to_dict(), "prune": prune, "force": force, "reason": "coreplane messaging apply"}
    _user_change(lambda s: audit.record(s, actor="cli", action="mq.apply", target=TARGET, details=details))
    removed = len(done.remove) if prune else 0
    typer.echo(f"coreplane: applied: {len(done.add)} added, {len(done.change)} recreated, {removed} removed")


dashboards_app = typer.Typer(help="Grafana dashboards (dashboards/json): push them into a Grafana.")
app.add_typer(dashboards_app, name="dashboards")


@dashboards_app.command("push")
def dashboards_push(
    grafana_url: Annotated[str, typer.Option(envvar="GRAFANA_URL", help="Grafana's base URL.")],
    token: Annotated[
        str, typer.Option(envvar="GRAFANA_TOKEN", help="A Grafana service account token (Editor role).")
    ],
    folder: Annotated[
        str, typer.Option(help="The folder to put them in (created if missing).")
    ] = "coreplane",
    path: Annotated[
        Path | None, typer.Option(help="Folder of dashboard JSON (default: the checkout's dashboards/json).")
    ] = None,
) -> None:
    """Create or replace every dashboard in a Grafana folder, by uid (running it twice is harmless)."""
    from controlplane.dashboards import DEFAULT_DIR, PushError, load, push

    try:
        pushed = push(grafana_url, token, load(path or DEFAULT_DIR), folder)
    except PushError as exc:
        typer.echo(f"coreplane: {exc}", err=True)
        raise typer.Exit(1) from None
    for item in pushed:
        typer.echo(f"{item.uid}\t{item.title}\tversion {item.version}\t{item.url}")
    typer.echo(f"coreplane: {len(pushed)} dashboard(s) in folder {folder!r} of {grafana_url}", err=True)


@app.command()
def version() -> None:
    """Print coreplane's version."""
    from controlplane import __version__

    typer.echo(__version__)
