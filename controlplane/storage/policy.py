"""Bucket policies in a structured form: the prefixes anyone may read without a
credential. coreplane renders them into an S3 bucket policy (s3:GetObject for Principal
``*`` on ``arn:aws:s3:::<bucket>/<prefix>*``) and pushes it, so the server itself enforces
it; users never send raw policy JSON, which could grant far more than they meant (a write,
a listing, every bucket). Functions take the caller's session and never commit."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.errors import NotFound, Rejected, TooLarge
from controlplane.storage import names
from controlplane.storage.client import Storage
from controlplane.store.models import StorageBucket

MAX_PREFIXES = 20
STATEMENT_ID = "coreplane-anonymous-read"
FIELD = "anonymous_read"


def check(prefixes: list[str]) -> list[str]:
    """The prefixes, checked and without duplicates; Rejected naming the bad item."""
    if len(prefixes) > MAX_PREFIXES:
        raise TooLarge(f"{len(prefixes)} prefixes; a bucket's policy holds {MAX_PREFIXES} at most")
    found: list[str] = []
    for i, prefix in enumerate(prefixes):
        field = f"{FIELD}[{i}]"
        if not isinstance(prefix, str) or not prefix:
            # An empty prefix would open the whole bucket: too big a step to take by omission.
            raise Rejected.field(
                "a prefix must be a non-empty string, e.g. 'public/'", field, "empty", "body"
            )
        if "*" in prefix or "?" in prefix:
            raise Rejected.field(
                "a prefix may not hold '*' or '?' (wildcards in a policy)", field, "wildcard", "body"
            )
        names.key_prefix(prefix, field, "body")
        if prefix not in found:
            found.append(prefix)
    return found


def render(bucket: str, prefixes: list[str]) -> dict[str, Any]:
    """The S3 bucket policy granting anonymous GETs of objects under ``prefixes``."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": STATEMENT_ID,
                "Effect": "Allow",
                "Principal": {"AWS": ["*"]},
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/{p}*" for p in prefixes],
            }
        ],
    }


def parse(bucket: str, document: dict[str, Any] | None) -> list[str]:
    """The anonymous-read prefixes a server's policy holds (from statements of the shape
    ``render`` makes; others are left to the raw form)."""
    found: list[str] = []
    head = f"arn:aws:s3:::{bucket}/"
    for statement in (document or {}).get("Statement") or []:
        if not _anonymous_get(statement):
            continue
        resources = statement.get("Resource") or []
        for resource in [resources] if isinstance(resources, str) else resources:
            if isinstance(resource, str) and resource.startswith(head) and resource.endswith("*"):
                found.append(resource[len(head) : -1])
    return found


def _anonymous_get(statement: dict[str, Any]) -> bool:
    principal = statement.get("Principal")
    if isinstance(principal, dict):
        principal = principal.get("AWS")
    everyone = principal == "*" or principal == ["*"]
    actions = statement.get("Action")
    actions = [actions] if isinstance(actions, str) else actions or []
    return statement.get("Effect") == "Allow" and everyone and actions == ["s3:GetObject"]


def raw(storage: Storage, bucket: str) -> dict[str, Any] | None:
    """The policy the server holds (None: none)."""
    try:
        text = storage.call("get_bucket_policy", bucket, storage.client.get_bucket_policy, bucket)
    except NotFound:
        return None
    return json.loads(text) if text else None


def read(storage: Storage, bucket: str) -> dict[str, Any]:
    """{"anonymous_read": [prefixes], "raw": the server's policy or None}."""
    held = raw(storage, bucket)
    return {FIELD: parse(bucket, held), "raw": held}


def put(session: Session, storage: Storage, row: StorageBucket, prefixes: list[str], *,
        actor: str) -> dict[str, Any]:  # fmt: skip
    """Anonymous read of ``prefixes`` pushed to the server (none: the policy removed), the
    pushed document in the audit; replaces any policy the bucket had. Answers what ``read``
    would, from the document just pushed (no read back)."""
    prefixes = check(prefixes)
    if not prefixes:
        remove(session, storage, row, actor=actor)
        return {FIELD: [], "raw": None}
    document = render(row.name, prefixes)
    storage.call(
        "set_bucket_policy", row.name, storage.client.set_bucket_policy, row.name, json.dumps(document)
    )
    audit.record(
        session, actor=actor, action="storage.policy.set", target=row.name, details={"policy": document}
    )
    return {FIELD: prefixes, "raw": document}


def remove(session: Session, storage: Storage, row: StorageBucket, *, actor: str) -> None:
    """No policy on the bucket (quiet when it had none); audited with what it held."""
    held = raw(storage, row.name)
    if held is not None:
        storage.call("delete_bucket_policy", row.name, storage.client.delete_bucket_policy, row.name)
    audit.record(session, actor=actor, action="storage.policy.delete", target=row.name, details={"was": held})
