"""Invalidation that reaches every process: tag version counters in Redis (bumping one
invalidates every entry stamped with the old version, in O(1), however many there are),
and a pub/sub broadcast so each process drops its in-process copies at once.

A prefix is a tag too: every key carries an implicit tag for each ``:``-ended prefix of
it (``user:42:profile`` carries ``user:`` and ``user:42:``), so invalidating a prefix is
one counter bump, also in Memcached, which cannot list keys. The control plane's
``cache.invalidate`` action calls :func:`invalidate` (through the agent)."""

from __future__ import annotations

import json
from collections.abc import Iterable

TAG_KEY = "coreplane:tag:{}"
CHANNEL = "coreplane:cache:invalidate"


def prefix_tag(namespace: str, prefix: str) -> str:
    return f"prefix:{namespace}:{prefix}"


def implicit_tags(namespace: str, key: str) -> list[str]:
    """The prefix tags of ``key``: one per ``:`` in it."""
    tags, at = [], key.find(":")
    while at != -1:
        tags.append(prefix_tag(namespace, key[: at + 1]))
        at = key.find(":", at + 1)
    return tags


def check_prefix(prefix: str) -> None:
    if not prefix.endswith(":"):
        raise ValueError(
            f"prefix {prefix!r} must end with ':' (invalidation by prefix works on ':'-separated key "
            "segments, e.g. 'user:42:'), so it costs one counter bump instead of a scan"
        )


def invalidate(
    redis_client,
    *,
    namespace: str = "default",
    keys: Iterable[str] = (),
    tags: Iterable[str] = (),
    prefixes: Iterable[str] = (),
) -> dict:
    """Invalidate keys (of ``namespace``), tags (every namespace) and prefixes in Redis, and
    tell every process to drop its in-process copies. Tags and prefixes need nothing more;
    keys also live in Memcached, where the caller deletes them (Cache.invalidate and the
    agent's cache.flush do)."""
    keys = [f"{namespace}:{k}" for k in keys]
    tag_list = list(tags)
    for prefix in prefixes:
        check_prefix(prefix)
        tag_list.append(prefix_tag(namespace, prefix))
    pipe = redis_client.pipeline(transaction=False)
    for tag in tag_list:
        pipe.incr(TAG_KEY.format(tag))
    if keys:
        pipe.unlink(*keys)
    results = pipe.execute()
    versions = dict(zip(tag_list, results[: len(tag_list)], strict=True))
    removed = results[len(tag_list)] if keys else 0
    redis_client.publish(CHANNEL, json.dumps({"tags": versions, "keys": keys}))
    return {"tag_versions": versions, "removed": removed, "keys": keys}
