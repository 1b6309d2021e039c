"""A bucket's default encryption: SSE-S3 (the server's own keys) for every object written
without another choice, or none. Per-object SSE-S3 and SSE-C are the upload's
(controlplane/storage/objects.py). Functions take the caller's session and never commit."""

from __future__ import annotations

from typing import Any

from minio.sseconfig import Rule, SSEConfig
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.errors import NotFound, Rejected
from controlplane.storage.client import Storage
from controlplane.store.models import StorageBucket

DEFAULTS = ("SSE-S3",)
_ALGORITHMS = {"AES256": "SSE-S3", "aws:kms": "SSE-KMS"}


def default_of(storage: Storage, bucket: str) -> str | None:
    """ "SSE-S3" (or "SSE-KMS", set outside coreplane) when the bucket encrypts by default."""
    try:
        config = storage.call("get_bucket_encryption", bucket, storage.client.get_bucket_encryption, bucket)
    except NotFound:
        return None
    if config is None or config.rule is None:
        return None
    return _ALGORITHMS.get(config.rule.sse_algorithm, config.rule.sse_algorithm)


def read(storage: Storage, bucket: str) -> dict[str, Any]:
    return {"default": default_of(storage, bucket)}


def set_default(session: Session, storage: Storage, row: StorageBucket, default: str | None, *,
                actor: str) -> dict[str, Any]:  # fmt: skip
    """The bucket's default encryption set ("SSE-S3") or removed (None); audited. Objects
    already written keep the encryption they were written with. Answers what ``read`` would,
    from what was just set (no read back); the read before decides whether there is a
    default to remove."""
    if default is not None and default not in DEFAULTS:
        raise Rejected.field(
            f"default must be {' or '.join(DEFAULTS)} or null", "default", "unknown encryption", "body"
        )
    was = default_of(storage, row.name)
    client = storage.client
    if default == "SSE-S3":
        config = SSEConfig(Rule.new_sse_s3_rule())
        storage.call("set_bucket_encryption", row.name, client.set_bucket_encryption, row.name, config)
    elif was is not None:
        storage.call("delete_bucket_encryption", row.name, client.delete_bucket_encryption, row.name)
    audit.record(
        session,
        actor=actor,
        action="storage.encryption",
        target=row.name,
        details={"default": default, "was": was},
    )
    return {"default": default}
