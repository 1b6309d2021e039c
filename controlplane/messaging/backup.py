"""Back up and restore RabbitMQ's definitions (exchanges, queues, bindings, policies,
parameters; for the whole broker also vhosts, users and permissions) through the management
API, to a file or an S3 object, on demand or on a schedule (``BackupLoop`` in serve).

Scope: the whole broker by default. A recovery needs everything the node held (every vhost,
Celery's queues beside messaging's, the users and their permissions), and only the
broker-wide export carries users and permissions. ``scope="vhost"`` exports and restores
messaging's virtual host alone: what a restore that must not touch anything else uses.

Users' ``password_hash`` is replaced by REDACTED: a backup file or bucket must not become a
way to crack or replay broker credentials. Their tags and permissions are kept. A restore
drops the users whose hash was redacted (with a warning, since importing the placeholder
would lock them out), and the permissions of those of them the broker does not hold now.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.clock import utcnow
from controlplane.errors import Conflict, Rejected, TooLarge
from controlplane.messaging.management import Management
from controlplane.settings import S3Settings

log = logging.getLogger("coreplane.messaging.backup")

Scope = Literal["broker", "vhost"]
REDACTED = "<redacted>"
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # an import body; definitions of thousands of queues fit
MAX_ITEMS = 100_000  # entries in all of a document's lists
SECTIONS = (
    "users", "vhosts", "permissions", "topic_permissions", "parameters", "global_parameters",
    "policies", "queues", "exchanges", "bindings",
)  # fmt: skip
FILE_PREFIX = "rabbitmq-definitions-"


class BackupManagement(Management):
    """The management API with the broker-wide calls only backups need (the rest of the
    area works inside its virtual host)."""

    def broker_definitions(self) -> dict[str, Any]:
        return self._call("GET", "/api/definitions", what="the broker's definitions")

    def load_broker_definitions(self, doc: dict[str, Any]) -> None:
        self._call("POST", "/api/definitions", what="the broker's definitions to load", json=doc)

    def users(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/users", what="the users")


def redact(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with every user's password_hash replaced by REDACTED (a copy)."""
    users = [
        {**u, "password_hash": REDACTED} if "password_hash" in u else dict(u) for u in doc.get("users", [])
    ]
    return {**doc, "users": users} if "users" in doc else dict(doc)


def export(management: BackupManagement, *, scope: Scope = "broker") -> dict[str, Any]:
    """The definitions, users redacted, with where they came from under ``coreplane``."""
    doc = management.broker_definitions() if scope == "broker" else management.definitions()
    meta = {"scope": scope, "vhost": management.vhost, "exported_at": utcnow().isoformat() + "Z"}
    return {**redact(doc), "coreplane": meta}


def check(doc: Any) -> dict[str, Any]:
    """The document when it is a definitions object: each known section a list of objects,
    at most MAX_ITEMS entries; Rejected naming the section (``body.<section>[i]``) otherwise."""
    if not isinstance(doc, dict):
        raise Rejected.field("a definitions document is a JSON object", "body", "not_an_object", "body")
    if not any(section in doc for section in SECTIONS):
        raise Rejected.field(
            f"no definitions in the document: expected some of {', '.join(SECTIONS)}", "body", "empty", "body"
        )
    total = 0
    for section in SECTIONS:
        items = doc.get(section, [])
        if not isinstance(items, list):
            raise Rejected.field(f"{section} must be a list", f"body.{section}", "not_a_list", "body")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise Rejected.field(
                    f"{section}[{i}] must be an object", f"body.{section}[{i}]", "not_an_object", "body"
                )
        total += len(items)
    if total > MAX_ITEMS:
        raise TooLarge(f"the document holds {total} definitions; at most {MAX_ITEMS}")
    return doc


def importable(doc: dict[str, Any], existing_users: set[str]) -> tuple[dict[str, Any], list[str]]:
    """(what to POST, the users left out): users whose hash is redacted are dropped, and
    the permissions of dropped users the broker does not have (RabbitMQ refuses a
    permission for an unknown user). Our own ``coreplane`` key is left out too."""
    doc = {k: v for k, v in doc.items() if k != "coreplane"}
    dropped = [u["name"] for u in doc.get("users", []) if u.get("password_hash") == REDACTED]
    if not dropped:
        return doc, []
    gone = set(dropped) - existing_users
    out = {**doc, "users": [u for u in doc.get("users", []) if u["name"] not in dropped]}
    for section in ("permissions", "topic_permissions"):
        if section in doc:
            out[section] = [p for p in doc[section] if p.get("user") not in gone]
    return out, dropped


def restore(management: BackupManagement, doc: dict[str, Any]) -> list[str]:
    """Load ``doc`` into the broker (a broker-wide document) or messaging's vhost (a vhost's
    document: one without vhosts and users); returns the users left out."""
    check(doc)
    if "vhosts" in doc or "users" in doc:
        existing = {u["name"] for u in management.users()} if doc.get("users") else set()
        body, dropped = importable(doc, existing)
        management.load_broker_definitions(body)
    else:
        body, dropped = importable(doc, set())
        management.load_definitions(body)
    if dropped:
        log.warning(
            "restore left out %d user(s) whose password hash the backup redacted (set their "
            "passwords again): %s", len(dropped), ", ".join(dropped[:20]),
        )  # fmt: skip
    return dropped


def import_document(
    session: Session,
    management: BackupManagement,
    doc: dict[str, Any],
    *,
    actor: str,
    client: str | None = None,
) -> tuple[dict[str, int], list[str]]:
    """Restore ``doc`` and audit it in ``session`` (the caller commits): (definitions per
    section loaded, users left out)."""
    dropped = restore(management, doc)
    loaded = {k: len(v) for k, v in doc.items() if k in SECTIONS}
    audit.record(session, actor=actor, action="messaging.import", target=management.vhost, client=client,
                 details={"loaded": loaded, "users_left_out": dropped})  # fmt: skip
    return loaded, dropped


def _encoded(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def _name(now: datetime) -> str:
    return f"{FILE_PREFIX}{now.strftime('%Y%m%dT%H%M%S%fZ')}.json"


def write_file(doc: dict[str, Any], path: str | Path) -> Path:
    """Write ``doc`` to a new file at ``path``, readable by its owner only (0600 from
    creation: there is no moment another user could open it); refuses to overwrite."""
    file = Path(path)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(_encoded(doc))
    return file


def to_file(doc: dict[str, Any], directory: str | Path, *, now: datetime | None = None) -> Path:
    """Write ``doc`` to a new timestamped 0600 file in ``directory`` (made when missing)."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    return write_file(doc, folder / _name(now or utcnow()))


def s3_client(s3: S3Settings) -> Any:
    """A minio client for the S3 settings' server (Conflict when none is configured)."""
    if not s3.endpoint:
        raise Conflict("no S3 server is configured for backups: set COREPLANE_S3__ENDPOINT")
    from minio import Minio

    return Minio(s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key, secure=s3.secure)


def to_s3(
    doc: dict[str, Any], s3: S3Settings, bucket: str, *, key: str | None = None, now: datetime | None = None
) -> str:
    """Put ``doc`` in ``bucket`` (made when missing) under ``key`` or a timestamped one;
    returns the key."""
    client = s3_client(s3)
    data = _encoded(doc)
    key = key or _name(now or utcnow())
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    client.put_object(bucket, key, io.BytesIO(data), len(data), content_type="application/json")
    return key


def read_s3(s3: S3Settings, bucket: str, key: str) -> dict[str, Any]:
    response = s3_client(s3).get_object(bucket, key)
    try:
        return json.loads(response.read())
    finally:
        response.close()
        response.release_conn()


def read_file(path: str | Path) -> dict[str, Any]:
    """A backup file's document; Rejected when it is too large or not JSON."""
    file = Path(path)
    if file.stat().st_size > MAX_DOCUMENT_BYTES:
        raise TooLarge(f"{file} is over {MAX_DOCUMENT_BYTES} bytes")
    try:
        return check(json.loads(file.read_bytes()))
    except json.JSONDecodeError as exc:
        raise Rejected.field(f"{file} is not JSON: {exc}", "file", "not_json") from None


def back_up(
    session: Session, management: BackupManagement, *, to: str, directory: str | None, bucket: str | None,
    s3: S3Settings, actor: str, client: str | None = None, scope: Scope = "broker",
) -> str:  # fmt: skip
    """Export and write to ``to`` ("file": ``directory``; "s3": ``bucket``), audited in
    ``session`` (the caller commits); returns the path or s3://bucket/key. Conflict when
    the target is not configured, before the broker is asked."""
    if to == "file" and not directory:
        raise Conflict("no backup directory is configured: set COREPLANE_MESSAGING__BACKUP_DIR")
    if to == "s3" and not bucket:
        raise Conflict("no backup bucket is configured: set COREPLANE_MESSAGING__BACKUP_BUCKET")
    if to not in ("file", "s3"):
        raise Rejected.field(f"to must be file or s3, not {to!r}", "to", "unknown", "body")
    doc = export(management, scope=scope)
    where = str(to_file(doc, directory)) if to == "file" else f"s3://{bucket}/{to_s3(doc, s3, bucket)}"  # type: ignore[arg-type]
    audit.record(session, actor=actor, action="messaging.backup", target=where, client=client,
                 details={"scope": scope, "queues": len(doc.get("queues", []))})  # fmt: skip
    return where


class BackupLoop:
    """Scheduled backups in `coreplane serve`: every ``interval_s``, to the directory and/or
    the bucket configured, audited as actor "system"."""

    def __init__(self, engine: Engine, settings: Any, management_of: Callable[[], BackupManagement]) -> None:
        self.engine = engine
        self.settings = settings
        self.management_of = management_of
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[str]:
        messaging = self.settings.messaging
        written = []
        targets = [("file", messaging.backup_dir), ("s3", messaging.backup_bucket)]
        with self.management_of() as management, Session(self.engine) as session, session.begin():
            for to, where in targets:
                if where:
                    written.append(self._write(session, management, to))
        return written

    def _write(self, session: Session, management: BackupManagement, to: str) -> str:
        messaging = self.settings.messaging
        return back_up(
            session, management, to=to, directory=messaging.backup_dir, bucket=messaging.backup_bucket,
            s3=self.settings.s3, actor="system",
        )  # fmt: skip

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                log.info("messaging backup written: %s", ", ".join(self.run_once()))
            except Exception:
                log.exception("messaging backup failed; next try in %.0f s", interval_s)

    def start(self) -> None:
        interval = self.settings.messaging.backup_interval_s
        self._thread = threading.Thread(target=self._run, args=(interval,), name="mq-backup", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
