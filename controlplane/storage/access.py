"""Who may do what in a bucket: per-bucket grants to coreplane users and roles, checked
by the API and the console before any call reaches the server.

A grant's ``subject`` is ``user:<name>`` (a console user, or an API token by its name) or
``role:<role>`` (everyone at that role); its ``level`` is read < write < admin:

- read: list, download, stat, versions, presigned GET;
- write: read, plus upload, copy, delete, restore a version, presigned PUT, share links;
- admin: write, plus grants, quota, tags, versioning, policy, lifecycle, encryption,
  mirrors, drills, deleting the bucket.

coreplane's admins hold admin on every bucket; anyone else holds the highest level any of
their grants gives (none: the bucket is refused with 403 and nothing is touched). Creating
a bucket needs the operator role; its creator gets admin on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.clock import utcnow
from controlplane.errors import Forbidden, NotFound, Rejected, TooLarge
from controlplane.store.models import StorageBucket, StorageGrant
from controlplane.users import ROLES

Level = Literal["read", "write", "admin"]  # lowest first; the API's type too
LEVELS: tuple[str, ...] = get_args(Level)
RANK = {level: rank for rank, level in enumerate(LEVELS, start=1)}
MAX_GRANTS = 200  # per bucket


@dataclass(frozen=True)
class Caller:
    """Who asks: a console user or an API token (``name``) at a coreplane ``role``."""

    name: str
    role: str

    @property
    def subjects(self) -> tuple[str, str]:
        return (f"user:{self.name}", f"role:{self.role}")


def level_of(session: Session, caller: Caller, bucket: str) -> str | None:
    """The highest level ``caller`` holds on ``bucket`` (None: no access)."""
    if caller.role == "admin":
        return "admin"
    levels = session.scalars(
        select(StorageGrant.level).where(
            StorageGrant.bucket == bucket, StorageGrant.subject.in_(caller.subjects)
        )
    ).all()
    return max(levels, key=RANK.__getitem__, default=None)


def require(session: Session, caller: Caller, bucket: str, level: str) -> StorageBucket:
    """The managed bucket, when ``caller`` holds ``level`` on it; Forbidden otherwise (the
    same answer whether or not the bucket exists, to a caller with no grant on it)."""
    return granted(session, caller, bucket, level)[0]


def granted(session: Session, caller: Caller, bucket: str, level: str) -> tuple[StorageBucket, str]:
    """``require``'s bucket and the level ``caller`` holds on it (at least ``level``), for a
    page that shows more to a higher level: one grant query, not a second ``level_of``."""
    held = level_of(session, caller, bucket)
    if held is None or RANK[held] < RANK[level]:
        have = f"you hold {held}" if held else "you hold no grant on it"
        raise Forbidden(f"this needs {level} on bucket {bucket!r}; {have}")
    found = session.get(StorageBucket, bucket)
    if found is None:
        raise NotFound(f"no bucket {bucket!r} is managed by coreplane")
    return found, held


def visible(session: Session, caller: Caller, at_least: str = "read") -> set[str] | None:
    """The buckets ``caller`` holds ``at_least`` on (None: all of them, an admin)."""
    if caller.role == "admin":
        return None
    enough = [level for level in LEVELS if RANK[level] >= RANK[at_least]]
    return set(
        session.scalars(
            select(StorageGrant.bucket).where(
                StorageGrant.subject.in_(caller.subjects), StorageGrant.level.in_(enough)
            )
        )
    )


def _subject(subject: str) -> str:
    kind, _, name = subject.partition(":")
    if kind == "role" and name in ROLES:
        return subject
    if kind == "user" and name and len(subject) <= 120 and name.isprintable():
        return subject
    raise Rejected.field(
        f"subject {subject[:80]!r} must be 'user:<name>' or 'role:<{'|'.join(ROLES)}>'",
        "subject",
        "bad subject",
        "body",
    )


def grant(session: Session, bucket: str, subject: str, level: str, *, actor: str) -> StorageGrant:
    """Give ``subject`` ``level`` on ``bucket`` (replacing what it held there); audited."""
    subject = _subject(subject)
    if level not in RANK:
        raise Rejected.field(f"level must be one of {', '.join(LEVELS)}", "level", "unknown level", "body")
    found = session.scalars(
        select(StorageGrant).where(StorageGrant.bucket == bucket, StorageGrant.subject == subject)
    ).first()
    if found is None:
        count = (
            session.scalar(
                select(func.count()).select_from(StorageGrant).where(StorageGrant.bucket == bucket)
            )
            or 0
        )
        if count >= MAX_GRANTS:
            raise TooLarge(f"bucket {bucket!r} has {count} grants, the most it may hold")
        before = None
        found = StorageGrant(
            bucket=bucket, subject=subject, level=level, created_at=utcnow(), created_by=actor
        )
        session.add(found)
    else:
        before, found.level = found.level, level
    audit.record(
        session,
        actor=actor,
        action="storage.grant",
        target=bucket,
        details={"subject": subject, "level": level, "was": before},
    )
    return found


def revoke(session: Session, bucket: str, subject: str, *, actor: str) -> None:
    """Take ``subject``'s grant on ``bucket`` away; audited. NotFound when it held none."""
    done = session.execute(
        delete(StorageGrant).where(StorageGrant.bucket == bucket, StorageGrant.subject == subject)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"{subject!r} holds no grant on bucket {bucket!r}")
    audit.record(session, actor=actor, action="storage.revoke", target=bucket, details={"subject": subject})


def grants(session: Session, bucket: str) -> list[StorageGrant]:
    return list(
        session.scalars(
            select(StorageGrant).where(StorageGrant.bucket == bucket).order_by(StorageGrant.subject)
        )
    )
