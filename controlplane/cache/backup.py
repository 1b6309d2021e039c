"""Back up a namespace from Redis (values with their remaining TTLs, as Redis DUMPs them)
to a file or an S3 object, and import it back to warm a cold cache."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import BinaryIO

from controlplane.cache.invalidation import TAG_KEY


def _escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def _entries(redis_client, namespace: str) -> Iterator[dict]:
    batch = []
    for key in redis_client.scan_iter(match=f"{_escape(namespace)}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            yield from _dump(redis_client, batch)
            batch = []
    if batch:
        yield from _dump(redis_client, batch)


def _dump(redis_client, keys: list[bytes]) -> Iterator[dict]:
    pipe = redis_client.pipeline(transaction=False)
    for key in keys:
        pipe.pttl(key)
        pipe.dump(key)
    results = pipe.execute()
    for key, ttl, data in zip(keys, results[::2], results[1::2], strict=True):
        if data is None or ttl == -2:  # expired between SCAN and DUMP
            continue
        yield {"key": key.decode(), "ttl_ms": ttl if ttl > 0 else 0, "dump": base64.b64encode(data).decode()}


def export_namespace(redis_client, namespace: str, out: BinaryIO) -> int:
    """Write the namespace's entries as JSON lines, with the tag versions they were
    written under (so an import stays valid); returns how many entries."""
    count = 0
    for entry in _entries(redis_client, namespace):
        out.write(json.dumps(entry).encode() + b"\n")
        count += 1
    tags = {k.decode(): int(v) for k, v in _tag_versions(redis_client)}
    out.write(json.dumps({"tag_versions": tags}).encode() + b"\n")
    return count


def _tag_versions(redis_client) -> Iterator[tuple[bytes, bytes]]:
    keys = list(redis_client.scan_iter(match=TAG_KEY.format("*"), count=1000))
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        yield from ((k, v) for k, v in zip(chunk, redis_client.mget(chunk), strict=True) if v is not None)


def import_namespace(redis_client, inp: BinaryIO) -> int:
    """Restore entries (replacing what is there, keeping their remaining TTL); tag
    counters only move forward, so an old backup never revives invalidated entries."""
    count = 0
    pipe = redis_client.pipeline(transaction=False)
    for line in inp:
        record = json.loads(line)
        if "tag_versions" in record:
            for key, version in record["tag_versions"].items():
                # Never lower a counter: entries invalidated since the backup stay invalid.
                pipe.eval("if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then "
                          "redis.call('SET', KEYS[1], ARGV[1]) end", 1, key, version)  # fmt: skip
            continue
        pipe.restore(record["key"], record["ttl_ms"], base64.b64decode(record["dump"]), replace=True)
        count += 1
        if len(pipe) >= 500:
            pipe.execute()
    pipe.execute()
    return count


def export_to_s3(redis_client, namespace: str, s3, bucket: str, name: str) -> int:
    """The same as export_namespace, into an S3 object (``s3`` is a minio.Minio)."""
    buffer = io.BytesIO()
    count = export_namespace(redis_client, namespace, buffer)
    size = buffer.tell()
    buffer.seek(0)
    if not s3.bucket_exists(bucket):
        s3.make_bucket(bucket)
    s3.put_object(bucket, name, buffer, size, content_type="application/x-ndjson")
    return count


def import_from_s3(redis_client, s3, bucket: str, name: str) -> int:
    response = s3.get_object(bucket, name)
    try:
        return import_namespace(redis_client, io.BytesIO(response.read()))
    finally:
        response.close()
        response.release_conn()
