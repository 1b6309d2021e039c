"""Lifecycle rules: current objects expire after ``expire_days``, noncurrent versions after
``noncurrent_days`` since they became noncurrent, per bucket and key prefix.

The rules are pushed to the server as an S3 lifecycle configuration where it takes one
(``StorageBucket.lifecycle_on_server`` says whether it did). A server that accepts a
configuration need not apply it (SeaweedFS keeps and returns it; whether it expires
anything cannot be shown in a test, days being the smallest unit), so the leader's storage
round applies the same rules itself (``tick``, each bucket every
``storage.lifecycle_interval_s``): what the server already expired is simply not found
again. ``evaluate`` decides (pure); ``run`` lists and deletes, capped per round.
Functions take the caller's session and never commit."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from itertools import groupby, pairwise
from typing import Any

from minio.commonconfig import DISABLED, ENABLED, Filter
from minio.deleteobjects import DeleteObject
from minio.lifecycleconfig import Expiration, LifecycleConfig, NoncurrentVersionExpiration, Rule
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.clock import utcnow
from controlplane.errors import NotFound, Rejected, TooLarge, Unavailable
from controlplane.storage import buckets, names, versions
from controlplane.storage.client import Storage
from controlplane.storage.objects import ObjectInfo
from controlplane.store.models import StorageBucket

log = logging.getLogger("coreplane.storage")

MAX_RULES = 50
MAX_DAYS = 36500
ID_MAX = 255  # S3's own limit on a rule's id
MAX_DELETIONS = 1000  # per bucket and per round: a wide rule empties a bucket over rounds
MAX_SCAN = 100_000  # versions read per bucket and round
MAX_REPORTED = 200  # doomed entries kept in an answer and in the audit
DELETE_BATCH = 1000  # entries in one DeleteObjects request (S3's limit)
ACTOR = "coreplane:lifecycle"
_FIELDS = {"id", "prefix", "expire_days", "noncurrent_days", "enabled"}


@dataclass(frozen=True)
class Doomed:
    """A version a rule sends away: ``action`` "expire" deletes the current object (under
    versioning that leaves a delete marker), "noncurrent" removes that version for good."""

    key: str
    version_id: str | None
    rule: str
    action: str
    since: datetime  # written (expire) or became noncurrent (noncurrent)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "since": self.since.isoformat()}


# -- the rules -----------------------------------------------------------------------------


def parse(rules: Any, field: str = "rules") -> list[dict[str, Any]]:
    """Rules in coreplane's format, checked and normalised; Rejected naming the bad field."""
    if not isinstance(rules, list):
        raise Rejected.field("rules must be a list", field, "not a list", "body")
    if len(rules) > MAX_RULES:
        raise TooLarge(f"{len(rules)} rules; a bucket holds {MAX_RULES} at most")
    found = [_rule(rule, f"{field}[{i}]") for i, rule in enumerate(rules)]
    seen: set[str] = set()
    for i, rule in enumerate(found):
        if rule["id"] in seen:
            raise Rejected.field(
                f"rule id {rule['id']!r} is used twice", f"{field}[{i}].id", "duplicate", "body"
            )
        seen.add(rule["id"])
    return found


def _rule(rule: Any, field: str) -> dict[str, Any]:
    if not isinstance(rule, dict):
        raise Rejected.field("a rule must be an object", field, "not an object", "body")
    unknown = sorted(set(rule) - _FIELDS)
    if unknown:
        raise Rejected.field(
            f"unknown field {unknown[0]!r}: a rule has {', '.join(sorted(_FIELDS))}",
            f"{field}.{unknown[0]}",
            "unknown field",
            "body",
        )
    rule_id = rule.get("id")
    if not isinstance(rule_id, str) or not rule_id or len(rule_id) > ID_MAX or not rule_id.isprintable():
        raise Rejected.field(
            f"id must be 1 to {ID_MAX} printable characters", f"{field}.id", "bad id", "body"
        )
    prefix = rule.get("prefix", "")
    if not isinstance(prefix, str):
        raise Rejected.field("prefix must be a string", f"{field}.prefix", "not a string", "body")
    names.key_prefix(prefix, f"{field}.prefix", "body")
    enabled = rule.get("enabled", True)
    if not isinstance(enabled, bool):
        raise Rejected.field("enabled must be true or false", f"{field}.enabled", "not a boolean", "body")
    out: dict[str, Any] = {"id": rule_id, "prefix": prefix, "enabled": enabled}
    for name in ("expire_days", "noncurrent_days"):
        days = rule.get(name)
        if days is None:
            continue
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
            raise Rejected.field(f"{name} must be a whole number from 1 to {MAX_DAYS}", f"{field}.{name}",
                                 "out of range", "body")  # fmt: skip
        out[name] = days
    if "expire_days" not in out and "noncurrent_days" not in out:
        raise Rejected.field(
            "a rule needs an action: expire_days, noncurrent_days or both", field, "no action", "body"
        )
    return out


def to_server(rules: list[dict[str, Any]]) -> LifecycleConfig:
    """The rules as an S3 lifecycle configuration."""
    return LifecycleConfig(
        [
            Rule(
                ENABLED if rule["enabled"] else DISABLED,
                rule_filter=Filter(prefix=rule["prefix"]),
                rule_id=rule["id"],
                expiration=Expiration(days=rule["expire_days"]) if "expire_days" in rule else None,
                noncurrent_version_expiration=(
                    NoncurrentVersionExpiration(noncurrent_days=rule["noncurrent_days"])
                    if "noncurrent_days" in rule
                    else None
                ),
            )
            for rule in rules
        ]
    )


def push(storage: Storage, bucket: str, rules: list[dict[str, Any]]) -> bool:
    """The rules set on the server (none: its configuration removed); whether it took them.
    A server that answers with a refusal keeps coreplane's rules working through ``tick``;
    one that does not answer fails the request (503) so nothing is stored half-done."""
    client = storage.client
    try:
        if not rules:
            storage.call("delete_bucket_lifecycle", bucket, client.delete_bucket_lifecycle, bucket)
            return False
        storage.call("set_bucket_lifecycle", bucket, client.set_bucket_lifecycle, bucket, to_server(rules))
    except (Rejected, NotFound) as exc:  # the server's refusal; Unavailable (no answer) fails the request
        log.warning("the S3 server refused bucket %s's lifecycle: %s", bucket, exc)
        return False
    return True


def set_rules(session: Session, storage: Storage, row: StorageBucket, rules: Any, *,
              actor: str) -> dict[str, Any]:  # fmt: skip
    """The bucket's rules replaced, on the server where it takes them and in the store;
    audited."""
    checked = parse(rules)
    accepted = push(storage, row.name, checked)
    was = row.lifecycle
    row.lifecycle, row.lifecycle_on_server, row.updated_at = checked, accepted, utcnow()
    audit.record(
        session,
        actor=actor,
        action="storage.lifecycle.set",
        target=row.name,
        details={"rules": checked, "was": was, "on_server": accepted},
    )
    return read(storage, row)


def read(storage: Storage, row: StorageBucket) -> dict[str, Any]:
    """The stored rules, whether the server took them, and what the server holds now."""
    config = storage.call("get_bucket_lifecycle", row.name, storage.client.get_bucket_lifecycle, row.name)
    held = [_from_server(rule) for rule in config.rules] if config is not None else None
    return {"rules": row.lifecycle or [], "on_server": row.lifecycle_on_server, "server": held}


def _from_server(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.rule_id,
        "prefix": rule.rule_filter.prefix if rule.rule_filter else None,
        "enabled": rule.status == ENABLED,
        "expire_days": rule.expiration.days if rule.expiration else None,
        "noncurrent_days": (
            rule.noncurrent_version_expiration.noncurrent_days if rule.noncurrent_version_expiration else None
        ),
    }


# -- what goes -----------------------------------------------------------------------------


def in_force(rules: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The enabled ones among a bucket's stored (``parse``-normalised) rules."""
    return [rule for rule in rules or [] if rule["enabled"]]


def evaluate(rows: list[ObjectInfo], rules: list[dict[str, Any]], now: datetime) -> list[Doomed]:
    """What ``rules`` (the ones ``in_force``) send away from ``rows`` (versions and delete
    markers of a bucket) at ``now``: each version once, by the first rule that dooms it.

    A current object goes when it is ``expire_days`` old (a delete marker already current
    has nothing to expire). A noncurrent version goes ``noncurrent_days`` after its
    successor (the next newer version or marker) was written: that is when it became
    noncurrent."""
    now = versions.aware(now)
    doomed: dict[tuple[str, str | None, str], Doomed] = {}
    for key, group in groupby(versions.newest_first(rows), key=lambda r: r.key):
        history = list(group)
        for rule in rules:
            if key.startswith(rule["prefix"]):
                for found in _doomed_by(rule, history, now):
                    doomed.setdefault((found.key, found.version_id, found.action), found)
    return sorted(doomed.values(), key=lambda d: (d.key, d.action, d.since))


def _doomed_by(rule: dict[str, Any], history: list[ObjectInfo], now: datetime) -> list[Doomed]:
    found = []
    latest = history[0]
    expire = rule.get("expire_days")
    if expire and latest.is_latest and not latest.is_delete_marker:
        written = versions.aware(latest.last_modified)
        if now - written >= timedelta(days=expire):
            found.append(Doomed(latest.key, latest.version_id, rule["id"], "expire", written))
    noncurrent = rule.get("noncurrent_days")
    if noncurrent:
        for successor, version in pairwise(history):
            since = versions.aware(successor.last_modified)
            if not version.is_delete_marker and now - since >= timedelta(days=noncurrent):
                found.append(Doomed(version.key, version.version_id, rule["id"], "noncurrent", since))
    return found


def run(session: Session, storage: Storage, row: StorageBucket, *, dry_run: bool, now: datetime | None = None,
        actor: str, limit: int = MAX_DELETIONS, audit_empty: bool = True) -> dict[str, Any]:  # fmt: skip
    """The bucket's rules applied at ``now`` (default: now): what goes, listed, and unless
    ``dry_run`` deleted, ``limit`` at most (the rest goes next round); audited when it
    deleted or failed anything, or always with ``audit_empty`` (a person asked: the default;
    the leader's round passes False so a round with nothing to do leaves no row)."""
    rules = in_force(row.lifecycle)
    rows, more = _scan(storage, row.name, rules)
    doomed = evaluate(rows, rules, now or utcnow())
    chosen = doomed[:limit]
    deleted, failed = (0, []) if dry_run else _delete(storage, row.name, chosen)
    answer = {
        "bucket": row.name,
        "dry_run": dry_run,
        "scanned": len(rows),
        "scan_capped": more,
        "doomed": len(doomed),
        "deleted": deleted,
        "failed": failed[:MAX_REPORTED],
        "capped": len(doomed) > len(chosen),
        "items": [d.as_dict() for d in chosen[:MAX_REPORTED]],
    }
    if deleted or failed or audit_empty:
        action = "storage.lifecycle.dry_run" if dry_run else "storage.lifecycle.run"
        audit.record(session, actor=actor, action=action, target=row.name, details=answer)
    return answer


def _scan(storage: Storage, bucket: str, rules: list[dict[str, Any]]) -> tuple[list[ObjectInfo], bool]:
    """The versions under the rules' prefixes (each once), MAX_SCAN at most."""
    prefixes = sorted({rule["prefix"] for rule in rules})
    # A prefix inside another is read with it: "" covers everything.
    outer = [p for p in prefixes if not any(p != q and p.startswith(q) for q in prefixes)]
    rows: list[ObjectInfo] = []
    more = False
    for prefix in outer:
        found, cut = versions.scan(storage, bucket, prefix=prefix, cap=MAX_SCAN - len(rows))
        rows += found
        more = more or cut
        if len(rows) >= MAX_SCAN:
            return rows, True
    return rows, more


def _delete(storage: Storage, bucket: str, doomed: list[Doomed]) -> tuple[int, list[dict[str, Any]]]:
    """``doomed`` removed, one DeleteObjects request per DELETE_BATCH: (how many went, what
    failed). A request with no answer after others went fails the rest (listed) instead of
    raising, so what went is still answered and audited; with nothing gone it raises."""
    deleted: int = 0
    failed: list[dict[str, Any]] = []
    for start in range(0, len(doomed), DELETE_BATCH):
        batch = doomed[start : start + DELETE_BATCH]
        # Expiring the current object deletes it without a version: under versioning the
        # server leaves a delete marker, as S3's own expiration does.
        sent = {(d.key, d.version_id if d.action == "noncurrent" else None): d for d in batch}
        objects = [DeleteObject(key, version_id) for key, version_id in sent]
        try:
            errors = storage.call("remove_objects", bucket, buckets.remove_batch, storage, bucket, objects)
        except (NotFound, Rejected) as exc:
            failed += [_failure(d, str(exc)) for d in batch]
            continue
        except Unavailable as exc:
            if not deleted:
                raise
            failed += [_failure(d, str(exc)) for d in doomed[start:]]
            break
        for error in errors:  # an expiry was sent without its version: report the doomed one
            item = sent.get((error.name or "", error.version_id))
            version_id = item.version_id if item else error.version_id
            failed.append(
                {"key": error.name, "version_id": version_id, "error": f"{error.code}: {error.message}"}
            )
        deleted += len(sent) - len(errors)
    return deleted, failed


def _failure(item: Doomed, error: str) -> dict[str, Any]:
    return {"key": item.key, "version_id": item.version_id, "error": error}


def due(last: datetime | None, now: datetime, every: timedelta) -> bool:
    """Whether a bucket whose rules last ran at ``last`` (None: not since this process
    leads) runs at ``now``. A ``last`` after ``now`` (the clock went back) does not hold
    the bucket off for that long."""
    return last is None or not now - every < last <= now


def tick(session: Session, storage: Storage, *, now: datetime | None = None,
         every: timedelta | None = None) -> dict[str, str]:  # fmt: skip
    """The storage loop's lifecycle round at ``now`` (naive UTC, the store's form): each
    bucket with rules that is ``due`` (every ``storage.lifecycle_interval_s``: the rules are
    in days, so listing each bucket every loop round was waste), MAX_DELETIONS per bucket.
    A bucket cut by that cap stays due (the rest goes next round), as does one that fails
    (logged; the others still run). Each bucket's outcome: "ran", "capped" or the error."""
    now = now or utcnow()
    every = every or timedelta(seconds=storage.settings.lifecycle_interval_s)
    ran = storage.rounds.lifecycle_ran  # this app's memory: a new leader runs each bucket once
    rows = session.scalars(select(StorageBucket).order_by(StorageBucket.name)).all()
    for gone in set(ran) - {row.name for row in rows}:
        del ran[gone]
    outcome: dict[str, str] = {}
    for row in rows:
        if not row.lifecycle or not due(ran.get(row.name), now, every):
            continue  # no rules (all disabled: run lists nothing and records nothing)
        try:
            with session.begin_nested():
                answer = run(session, storage, row, dry_run=False, now=now, actor=ACTOR, audit_empty=False)
        except (NotFound, Rejected, Unavailable) as exc:
            log.warning("lifecycle of bucket %s failed this round: %s", row.name, exc)
            outcome[row.name] = f"{type(exc).__name__}: {exc}"
            continue
        if answer["capped"] and answer["deleted"]:
            ran.pop(row.name, None)
            outcome[row.name] = "capped"
        else:
            ran[row.name] = now
            outcome[row.name] = "ran"
    return outcome
