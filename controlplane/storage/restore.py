"""The ``storage.restore`` action (target "s3"): a mirror's latest versions written back into
a bucket (by default the mirrored bucket itself), through the action spine: checked params,
a preview saying how many objects and bytes would be written and which existing objects
would be overwritten, confirmation by creating the action, and the leader carrying it out in
its control loop (controlplane/loops/control.py), outside the round's transaction, audited.

An object the bucket holds already is left alone when it is the same as the mirror's copy
(same ETag as the copy or as the source version it was copied from), and when it differs
(newer, most likely: written since the mirror ran) it is overwritten only with
``overwrite: true``. Writes go through ``objects.upload``, so the bucket's quota holds and its
usage counts them. A restore is capped at ``MAX_OBJECTS`` objects (``prefix`` narrows it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from minio.datatypes import Object
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controlplane.actions import carried
from controlplane.actions.carried import OperationFailed, Outcome
from controlplane.errors import Conflict, Forbidden, NotFound, Rejected, TooLarge
from controlplane.storage import access, buckets, names, objects
from controlplane.storage import mirror as mirrors
from controlplane.storage.access import Caller
from controlplane.storage.client import Storage
from controlplane.store.models import Action, ApiToken, StorageBucket, StorageMirror, User

KIND = "storage.restore"
KINDS = (KIND,)
TARGET = "s3"
MAX_OBJECTS = 10_000
LISTED_KEYS = 20  # keys named in a preview's overwrite list
NOT_CONFIGURED = "object storage is not configured on the leader: set COREPLANE_S3__ENDPOINT"


# -- parameters ------------------------------------------------------------------------------


def _bad(name: str, why: str) -> Rejected:
    return Rejected.field(f"params.{name}: {why}", f"params.{name}", why, kind="body")


def check_params(params: dict) -> None:
    """Refuse what a restore could not carry out, naming ``params.<field>``."""
    mirror_id(params)
    target = params.get("target_bucket")
    if target is not None:
        if not isinstance(target, str):
            raise _bad("target_bucket", "must be a bucket name")
        names.bucket_name(target, "params.target_bucket", "body")
    prefix = params.get("prefix", "")
    if not isinstance(prefix, str):
        raise _bad("prefix", "must be text")
    names.key_prefix(prefix, "params.prefix", "body")
    if not isinstance(params.get("overwrite", False), bool):
        raise _bad("overwrite", "must be true or false")
    unknown = set(params) - {"mirror_id", "target_bucket", "prefix", "overwrite"}
    if unknown:
        raise _bad(
            sorted(unknown)[0], "is not a restore parameter (mirror_id, target_bucket, prefix, overwrite)"
        )


def mirror_id(params: dict) -> uuid.UUID:
    try:
        return uuid.UUID(str(params.get("mirror_id")))
    except ValueError:
        raise _bad("mirror_id", "must be the id of a mirror (a UUID)") from None


# -- the plan --------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a restore will do: ``writes`` (objects of the mirror's target to write back),
    and the existing objects it leaves alone or overwrites."""

    mirror: StorageMirror
    target_bucket: str
    prefix: str
    overwrite_allowed: bool
    create_bucket: bool
    writes: list[Object] = field(default_factory=list)
    overwrites: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # differ, left alone (no overwrite)
    unchanged: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "mirror_id": str(self.mirror.id),
            "source": f"{self.mirror.target_endpoint}:{self.mirror.target_bucket}",
            "target_bucket": self.target_bucket,
            "prefix": self.prefix,
            "create_bucket": self.create_bucket,
            "objects": len(self.writes),
            "bytes": sum(o.size or 0 for o in self.writes),
            "overwrites": len(self.overwrites),
            "overwritten_keys": self.overwrites[:LISTED_KEYS],
            "kept": len(self.kept),
            "kept_keys": self.kept[:LISTED_KEYS],
            "unchanged": self.unchanged,
            "overwrite": self.overwrite_allowed,
        }


def _target(session: Session, storage: Storage, params: dict) -> tuple[StorageMirror, str, bool]:
    """(mirror, the bucket written to, whether coreplane manages it already): what the grant
    check needs, before any listing."""
    check_params(params)
    mirror = mirrors.get(session, mirror_id(params))
    target_bucket = params.get("target_bucket") or mirror.bucket
    if mirrors.same_place(storage, mirror.target_endpoint, mirror.target_bucket, target_bucket):
        raise _bad("target_bucket", "is the mirror's own target: restore into another bucket")
    return mirror, target_bucket, session.get(StorageBucket, target_bucket) is not None


def plan(session: Session, storage: Storage, params: dict) -> Plan:
    """The restore ``params`` ask for, worked out against the buckets as they are now."""
    return _plan(session, storage, params, *_target(session, storage, params))


def _plan(
    session: Session, storage: Storage, params: dict, mirror: StorageMirror, target_bucket: str, managed: bool
) -> Plan:
    if not managed and storage.call(
        "bucket_exists", target_bucket, storage.client.bucket_exists, target_bucket
    ):
        raise Conflict(f"bucket {target_bucket!r} exists on the S3 server but coreplane does not manage it: "
                       "restore into a managed bucket or a new name")  # fmt: skip
    found = Plan(mirror, target_bucket, params.get("prefix", ""), params.get("overwrite", False), not managed)
    client = storage.target(mirror.target_endpoint)
    copies = list(mirrors.latest(storage, client, mirror.target_bucket, found.prefix))
    if len(copies) > MAX_OBJECTS:
        raise TooLarge(f"the mirror holds {len(copies)} objects under {found.prefix!r}; a restore writes "
                       f"{MAX_OBJECTS} at most: narrow it with a prefix")  # fmt: skip
    there = {}
    if managed:
        there = {
            o.object_name: o for o in mirrors.latest(storage, storage.client, target_bucket, found.prefix)
        }
    differing = [c for c in copies if c.object_name in there and c.etag != there[c.object_name].etag]
    sources = mirrors.source_etags(session, mirror, [c.object_name or "" for c in differing])
    for copy in copies:
        existing = there.get(copy.object_name)
        if existing is None:
            found.writes.append(copy)
        elif _same(copy, existing, sources.get(copy.object_name or "")):
            found.unchanged += 1
        elif found.overwrite_allowed:
            found.writes.append(copy)
            found.overwrites.append(copy.object_name or "")
        else:
            found.kept.append(copy.object_name or "")
    return found


def _same(copy: Object, existing: Object, source: tuple[str | None, int] | None) -> bool:
    """Whether the bucket's object is the mirror's copy: the same ETag, or (a copy written in
    parts has an ETag of its own) the ETag of the source version the copy was made from, as
    the mirror recorded it (its size telling that the record is of this copy)."""
    if copy.etag == existing.etag:
        return True
    if source is None or source[1] != (copy.size or 0):
        return False
    return bool(source[0]) and source[0] == (existing.etag or "").strip('"')


def describe(session: Session, storage: Storage, params: dict) -> list[str]:
    """The preview in plain words (for the console's confirmation step)."""
    return steps(plan(session, storage, params).as_dict())


def steps(found: dict[str, Any]) -> list[str]:
    """A plan (``Plan.as_dict``) in plain words."""
    where = f"bucket {found['target_bucket']}" + (" (made for it)" if found["create_bucket"] else "")
    lines = [f"Write {found['objects']} object(s), {found['bytes']} bytes, from mirror {found['source']} "
             f"into {where}" + (f", keys under {found['prefix']!r}" if found["prefix"] else "")]  # fmt: skip
    if found["overwrites"]:
        lines.append(
            f"Overwrite {found['overwrites']} object(s) that differ: {', '.join(found['overwritten_keys'])}"
        )
    if found["kept"]:
        lines.append(f"Leave {found['kept']} differing object(s) as they are (no overwrite): "
                     f"{', '.join(found['kept_keys'])}")  # fmt: skip
    lines.append(f"{found['unchanged']} object(s) are the same already")
    return lines


# -- carrying it out ------------------------------------------------------------------------------


def caller_of(session: Session, requested_by: str) -> Caller:
    """Whom the action's requester ("admin:…", "token:<name>", "user:<name>") is, for the
    storage grants; OperationFailed when it is no one with a role."""
    kind, _, name = requested_by.partition(":")
    role = None
    if kind == "admin":
        role = "admin"
    elif kind == "token":
        role = session.scalars(
            select(ApiToken.role).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        ).first()
    elif kind == "user":
        role = session.scalars(
            select(User.role).where(User.username == name, User.disabled.is_(False))
        ).first()
    if role is None:
        raise OperationFailed(
            f"{requested_by!r} holds no role: a restore is asked for by a person or a token"
        )
    return Caller(name, role)


def prepare(session: Session, storage: Storage, params: dict, *, requested_by: str) -> tuple[Caller, Plan]:
    """Check ``requested_by``'s grants (admin on the mirrored bucket, and write on the bucket
    written to when it is another managed one) before anything is listed, then plan: whom
    for, and the plan."""
    who = caller_of(session, requested_by)
    mirror, target_bucket, managed = _target(session, storage, params)
    try:
        access.require(session, who, mirror.bucket, "admin")
        if target_bucket != mirror.bucket and managed:
            access.require(session, who, target_bucket, "write")
    except Forbidden as exc:
        raise OperationFailed(str(exc)) from None
    return who, _plan(session, storage, params, mirror, target_bucket, managed)


def write(storage: Storage, found: Plan, row: StorageBucket) -> Outcome:
    """The plan's objects written into ``row``'s bucket (no store session: the bytes move with
    no store lock held); the note and the output."""
    written = sum(_write(storage, found.mirror, row, copy) for copy in found.writes)
    output = {**found.as_dict(), "written": len(found.writes), "written_bytes": written}
    return f"restored {len(found.writes)} object(s), {written} bytes, into {row.name}", output


def _write(storage: Storage, mirror: StorageMirror, row: StorageBucket, copy: Object) -> int:
    client, bucket, key = storage.target(mirror.target_endpoint), mirror.target_bucket, copy.object_name or ""
    with mirrors.opened(storage, "restore.get", client, bucket, key) as (response, head):
        info = objects.upload(
            storage, row, key, response, length=head.size, content_type=head.content_type,
            metadata=head.metadata, sse=head.sse,
        )  # fmt: skip
    return info.size


def carry_out(
    sessions: sessionmaker[Session],
    reads: sessionmaker[Session],
    storage: Storage,
    action_id: uuid.UUID,
    now: datetime,
) -> None:
    """Do one pending restore and end its action (actions/carried.py), audited, in
    transactions of its own: the grants and the plan in a read-only one, a new bucket in a
    short one, the bytes in none, the outcome in a last one; so a restore of 10,000 objects
    holds neither the control round's transaction nor the store's write lock while it
    streams. The action stays pending until it ends (a leader gone part way leaves it to the
    next, which finds what is back already the same). Whatever stops it fails the action."""
    outcome: Outcome | None = None
    error: Exception | None = None
    try:
        with reads.begin() as session:
            action = session.get(Action, action_id)
            if action is None or action.state != "pending":
                return  # cancelled meanwhile
            who, found = prepare(session, storage, action.params or {}, requested_by=action.requested_by)
            row = session.get(StorageBucket, found.target_bucket)
        if found.create_bucket:
            with sessions.begin() as session:
                row = buckets.create(session, storage, found.target_bucket, actor=who.name, role=who.role)
        if row is None:  # managed: the plan checked
            raise NotFound(f"no bucket {found.target_bucket!r} is managed by coreplane")
        outcome = write(storage, found, row)
    except Exception as exc:  # noqa: BLE001 -- any failure fails the action, ended below
        error = exc

    def ended() -> Outcome:
        if error is not None:
            raise error
        assert outcome is not None
        return outcome

    with sessions.begin() as session:
        action = session.get(Action, action_id)
        if action is None or action.state != "pending":
            return  # cancelled while it streamed: what was written stays
        carried.carry_out(session, action, now, ended, target=TARGET, backend_errors=(Exception,),
                          backend="the restore")  # fmt: skip


def advance(
    sessions: sessionmaker[Session], reads: sessionmaker[Session], storage: Storage, *, now: datetime
) -> int:
    """Carry out every pending restore, oldest first, each on its own (the leader's control
    loop, after its round's transaction); how many."""
    with reads.begin() as session:
        ids = [action.id for action in carried.pending(session, KINDS)]
    for action_id in ids:
        carry_out(sessions, reads, storage, action_id, now)
    return len(ids)


# Without storage on the leader, the plan fails them, saying how to configure it.
PLANS: dict[str, Callable[[Session, Action, datetime], None]] = {KIND: carried.unavailable(NOT_CONFIGURED)}
PARAM_CHECKS: dict[str, Callable[[dict], None]] = {KIND: check_params}
