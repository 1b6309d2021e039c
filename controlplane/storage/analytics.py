"""Storage analytics: what each bucket holds and how it is used, kept in the store so that
every process answers the same figures and growth is a history, not a guess.

Three parts:

- Usage (``tick``, the leader's round): each managed bucket's latest objects and bytes,
  counted in full at most every ``storage.count_interval_s`` (5 minutes) and at most ``MAX_ENTRIES_PER_ROUND``
  listed entries per round (a larger bucket's count resumes at the next round from where it
  stopped); every version counted too (``versions_bytes``) when the bucket's version listing
  fits in what is left of the round (a bucket never versioned is not listed twice: its
  versions are its objects); the top prefixes by size (first path segment). A full
  count writes StorageBucket.used_bytes/objects/usage_at and a point per figure into the
  store's metric series (service ``SERVICE``), so GET /storage/analytics serves growth.
  The S3 collector's coreplane_s3_bucket_objects/bytes are not reused for this: they come
  only where an agent watches the server, count every bucket of it (managed or not) without
  versions, and the quota needs this count anyway. The collector's canary
  (coreplane_s3_canary_seconds) is reused as it is: storage runs no canary of its own.
- Requests (``flush``, every process): the S3 calls this process made since its last flush
  (client.py's Prometheus figures) as deltas, so that summing points over processes and time
  gives the deployment's totals: ``coreplane_storage_requests`` {op,bucket} (calls),
  ``coreplane_storage_request_errors`` {op,bucket,code}, ``coreplane_storage_request_latency``
  {op,bucket,le} (calls whose time fell in the histogram bucket ending at ``le``, not
  cumulative: percentiles are computed over the summed buckets, which a per-process p95 could
  not be) and ``coreplane_storage_transfer_bytes`` {direction,bucket}.
- Reads (``overview``, ``figures``, ``bucket_detail``): the figures over a window for the API
  and the console.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from minio import Minio
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from controlplane.clock import utcnow
from controlplane.errors import NotFound, Rejected, Unavailable
from controlplane.schemas.ingest import MetricPointIn
from controlplane.storage import metrics
from controlplane.storage.client import Storage
from controlplane.store.models import InfrastructureMetric, MetricRollup1h, MetricRollup1m, StorageBucket
from controlplane.store.queries import SeriesQuery, pick_source, tag_value
from controlplane.store.queries import series as store_series
from controlplane.store.writes import upsert_rollups, write_points

log = logging.getLogger("coreplane.storage")

SERVICE = "coreplane-storage"  # service_name of the points storage writes itself
# The store's names differ from /metrics' gauges (coreplane_storage_bucket_*, telemetry.py):
# /metrics/backends re-exposes recent store series, and one name must mean one thing.
MAX_ENTRIES_PER_ROUND = 100_000  # listed entries (objects and versions) per round, all buckets
PAGE = 1000  # entries of one list request (S3's own maximum)
TOP_PREFIXES = 10
MAX_PREFIXES = 10_000  # distinct first segments kept per count; the rest fold into OTHER
OTHER = "(other)"
PREFIX_TAG_MAX = 200
MAX_BUCKETS = 500  # rows of one overview

OBJECTS = "coreplane_storage_usage_objects"
BYTES = "coreplane_storage_usage_bytes"
VERSIONS = "coreplane_storage_usage_versions"
VERSIONS_BYTES = "coreplane_storage_usage_versions_bytes"
PREFIX_BYTES = "coreplane_storage_usage_prefix_bytes"
REQUESTS = "coreplane_storage_requests"
ERRORS = "coreplane_storage_request_errors"
LATENCY = "coreplane_storage_request_latency"
TRANSFER = "coreplane_storage_transfer_bytes"

# window -> (length, step of its series)
WINDOWS = {
    "1h": (timedelta(hours=1), 60),
    "6h": (timedelta(hours=6), 300),
    "24h": (timedelta(hours=24), 900),
    "7d": (timedelta(days=7), 3600),
}


# --- usage --------------------------------------------------------------------------------


def prefix_of(key: str) -> str:
    """A key's first path segment with its slash ("logs/" of "logs/2026/a"); "" at the root."""
    head, slash, _ = key.partition("/")
    return head + slash if slash else ""


@dataclass
class Count:
    """A bucket's count so far; ``cursor`` is the last key listed (None: not started)."""

    cursor: str | None = None
    objects: int = 0
    bytes: int = 0
    prefixes: Counter[str] = field(default_factory=Counter)

    def add(self, key: str, size: int) -> None:
        self.cursor, self.objects, self.bytes = key, self.objects + 1, self.bytes + size
        prefix = prefix_of(key)[:PREFIX_TAG_MAX]
        if prefix not in self.prefixes and len(self.prefixes) >= MAX_PREFIXES:
            prefix = OTHER
        self.prefixes[prefix] += size

    def top(self, n: int = TOP_PREFIXES) -> list[tuple[str, int]]:
        """The ``n`` largest prefixes by bytes, largest first (ties by name)."""
        return sorted(self.prefixes.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def _page(client: Minio, bucket: str, after: str | None) -> list[tuple[str, int]]:
    listing = client.list_objects(bucket, recursive=True, start_after=after)
    return [(o.object_name or "", o.size or 0) for o in islice(listing, PAGE)]


def _versions(client: Minio, bucket: str, cap: int) -> tuple[int, int] | None:
    """(versions, bytes) of every version, or None past ``cap`` entries. Read in one go:
    SeaweedFS lists delete markers after the other keys, so a version listing cannot be
    resumed at a key like the latest objects'."""
    count = size = 0
    for entry in client.list_objects(bucket, recursive=True, include_version=True):
        count += 1
        if count > cap:
            return None
        size += 0 if entry.is_delete_marker else entry.size or 0
    return count, size


def count_latest(storage: Storage, bucket: str, count: Count, budget: int) -> tuple[bool, int]:
    """Continue ``count`` by pages while ``budget`` entries last: (finished, entries listed)."""
    spent = 0
    while spent < budget:
        page = storage.call("list_objects", bucket, _page, storage.client, bucket, count.cursor)
        for key, size in page:
            count.add(key, size)
        spent += len(page)
        if len(page) < PAGE:
            return True, spent
    return False, spent


def count_versions(storage: Storage, bucket: str, count: Count, budget: int) -> tuple[int, int] | None:
    """(versions, bytes) of every version (None: past ``budget``). A bucket whose versioning
    was never on holds no version but its objects: ``count``'s, with no second listing."""
    status = storage.call(
        "get_bucket_versioning", bucket, storage.client.get_bucket_versioning, bucket
    ).status
    if status not in ("Enabled", "Suspended"):
        return count.objects, count.bytes
    return storage.call("list_object_versions", bucket, _versions, storage.client, bucket, budget)


def _due(
    rows: list[StorageBucket], partial: dict[str, Count], now: datetime, every: timedelta
) -> list[StorageBucket]:
    due = [r for r in rows if r.name in partial or r.usage_at is None or r.usage_at <= now - every]
    # Unfinished counts first, then the never counted, then the oldest count.
    return sorted(due, key=lambda r: (r.name not in partial, r.usage_at or datetime.min))


def tick(
    session: Session,
    storage: Storage,
    *,
    now: datetime | None = None,
    every: timedelta | None = None,
    budget: int = MAX_ENTRIES_PER_ROUND,
) -> dict[str, str]:
    """The leader's usage round: each due bucket counted (or its count continued) within
    ``budget`` listed entries; each bucket's outcome ("counted", "partial", or the error)."""
    now = now or utcnow()
    every = every or timedelta(seconds=storage.settings.count_interval_s)
    # Unfinished counts are resumed from this app's memory (storage.rounds).
    partial = storage.rounds.partial
    rows = list(session.scalars(select(StorageBucket).order_by(StorageBucket.name)))
    for gone in set(partial) - {row.name for row in rows}:
        del partial[gone]
    outcome: dict[str, str] = {}
    for row in _due(rows, partial, now, every):
        if budget <= 0:
            break
        count = partial.pop(row.name, None) or Count()
        try:
            finished, spent = count_latest(storage, row.name, count, budget)
            budget -= spent
            if not finished:
                partial[row.name] = count
                outcome[row.name] = "partial"
                break
            versions = count_versions(storage, row.name, count, budget)
        except (NotFound, Unavailable) as exc:  # one bucket gone or failing does not stop the others
            log.warning("storage usage of %s not counted: %s", row.name, exc)
            outcome[row.name] = f"{type(exc).__name__}: {exc}"
            continue
        budget -= versions[0] if versions else budget
        record(session, row, count, versions, now)
        storage.usage.settle(row.name)  # this app's pending writes are in the count
        outcome[row.name] = "counted"
    return outcome


def record(
    session: Session, row: StorageBucket, count: Count, versions: tuple[int, int] | None, now: datetime
) -> None:
    """A finished count onto the bucket's row and into the store's series."""
    row.objects, row.used_bytes, row.usage_at = count.objects, count.bytes, now
    tags = {"bucket": row.name}
    figures = [(OBJECTS, count.objects, tags), (BYTES, count.bytes, tags)]
    if versions is not None:
        figures += [(VERSIONS, versions[0], tags), (VERSIONS_BYTES, versions[1], tags)]
    figures += [(PREFIX_BYTES, size, {**tags, "prefix": prefix}) for prefix, size in count.top()]
    _write(session, [_point(name, value, now, t) for name, value, t in figures])


def _point(metric: str, value: float, at: datetime, tags: dict[str, str]) -> MetricPointIn:
    return MetricPointIn(
        metric_type=metric, service_name=SERVICE, timestamp=at, value=float(value), tags=tags
    )


def _write(session: Session, points: list[MetricPointIn]) -> None:
    write_points(session, points)
    upsert_rollups(session, points)


# --- requests: this process's deltas ------------------------------------------------------

# What this process flushed last, per sample (name and labels): prometheus-client's figures
# are the process's, so this is too (two apps in one process share both).
_FLUSHED: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
_FLUSH_LOCK = threading.Lock()


def _samples() -> Iterator[tuple[str, dict[str, str], float]]:
    for family in (metrics.REQUESTS, metrics.ERRORS, metrics.BYTES):
        for metric in family.collect():
            for s in metric.samples:
                if s.name.endswith(("_bucket", "_count", "_total")):
                    yield s.name, dict(s.labels), s.value


def deltas(now: datetime) -> tuple[list[MetricPointIn], dict]:
    """The points of what changed since the last flush, and the figures to remember once
    they are stored (``remember``)."""
    points: list[MetricPointIn] = []
    seen: dict = {}
    cumulative: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    with _FLUSH_LOCK:
        for name, labels, value in _samples():
            key = (name, tuple(sorted(labels.items())))
            seen[key] = value
            delta = value - _FLUSHED.get(key, 0.0)
            if name.endswith("_bucket"):
                bound = float(labels["le"])
                cumulative[(labels["op"], labels["bucket"])].append((bound, delta))
            elif delta > 0 and name == "coreplane_storage_request_seconds_count":
                points.append(_point(REQUESTS, delta, now, {"op": labels["op"], "bucket": labels["bucket"]}))
            elif delta > 0 and name == "coreplane_storage_errors_total":
                points.append(_point(ERRORS, delta, now, labels))
            elif delta > 0 and name == "coreplane_storage_bytes_total":
                points.append(_point(TRANSFER, delta, now, labels))
    for (op, bucket), bounds in cumulative.items():
        for le, n in per_bucket(bounds):
            points.append(_point(LATENCY, n, now, {"op": op, "bucket": bucket, "le": le}))
    return points, seen


def per_bucket(cumulative: Iterable[tuple[float, float]]) -> list[tuple[str, float]]:
    """Cumulative (le, count) of a histogram -> (le as text, count in that bucket alone),
    the empty buckets left out."""
    out, below = [], 0.0
    for bound, total in sorted(cumulative):
        if total - below > 0:
            out.append(("+Inf" if math.isinf(bound) else f"{bound:g}", total - below))
        below = total
    return out


def remember(seen: dict) -> None:
    with _FLUSH_LOCK:
        _FLUSHED.update(seen)


def flush(session: Session, *, now: datetime | None = None) -> Callable[[], None]:
    """This process's storage requests since its last flush, written into the store; returns
    the call that marks them flushed, for after the commit (a failed commit loses nothing:
    the next flush writes them)."""
    points, seen = deltas(now or utcnow())
    if points:
        _write(session, points)
    return lambda: remember(seen)


# --- reads --------------------------------------------------------------------------------


def window_of(window: str, now: datetime | None = None) -> tuple[datetime, datetime, int]:
    """(since, until, step_s) of a window name; Rejected naming ``window`` otherwise."""
    if window not in WINDOWS:
        raise Rejected.field(
            f"window must be one of {', '.join(WINDOWS)} (got {window[:20]!r})", "window", "unknown", "query"
        )
    length, step = WINDOWS[window]
    until = now or utcnow()
    return until - length, until, step


def quantile(q: float, buckets: dict[str, float]) -> float | None:
    """The ``q`` quantile of a histogram given per bucket (upper bound "le" -> count in it),
    interpolated inside its bucket as Prometheus's histogram_quantile does; a quantile in
    the +Inf bucket answers the highest finite bound. None without observations."""
    ordered = sorted((float(le), n) for le, n in buckets.items() if n > 0)
    total = sum(n for _, n in ordered)
    if total <= 0:
        return None
    rank, below, lower = q * total, 0.0, 0.0
    finite = [le for le, _ in ordered if not math.isinf(le)]
    for le, n in ordered:
        if below + n >= rank:
            if math.isinf(le):
                return finite[-1] if finite else None
            return lower + (le - lower) * ((rank - below) / n)
        below, lower = below + n, le
    return finite[-1] if finite else None


def _rollup(since: datetime) -> Any:
    """The roll-up table for sums over a window starting at ``since``: hours past a day."""
    return MetricRollup1h if utcnow() - since > timedelta(days=1) else MetricRollup1m


def sums(
    session: Session, metric: str, since: datetime, buckets: Iterable[str] | None, keys: tuple[str, ...]
) -> dict[tuple[str | None, ...], float]:
    """Sum of ``metric``'s values since ``since``, per the values of tags ``keys`` (the
    bucket first), over every process that wrote them (storage's own points only, like
    growth and top_prefixes); ``buckets`` None: all."""
    model = _rollup(since)
    dialect = session.get_bind().dialect.name
    tags = [tag_value(dialect, model.tags, k).label(k) for k in keys]
    where: list[ColumnElement[bool]] = [
        model.metric_type == metric,
        model.service_name == SERVICE,
        model.bucket >= since,
    ]
    if buckets is not None:
        where.append(tags[0].in_(list(buckets)))
    stmt = select(*tags, func.sum(model.sum)).where(and_(*where)).group_by(*tags)
    return {tuple(row[:-1]): float(row[-1] or 0.0) for row in session.execute(stmt)}


def requests_by_op(
    session: Session, since: datetime, until: datetime, buckets: Iterable[str] | None
) -> dict[str, dict[str, dict[str, Any]]]:
    """bucket -> op -> {requests, requests_per_s, errors, error_ratio, p50_s, p95_s}."""
    names = None if buckets is None else list(buckets)
    seconds = max((until - since).total_seconds(), 1.0)
    calls = sums(session, REQUESTS, since, names, ("bucket", "op"))
    errors: dict[tuple, float] = defaultdict(float)
    for (bucket, op, _code), n in sums(session, ERRORS, since, names, ("bucket", "op", "code")).items():
        errors[(bucket, op)] += n
    latency: dict[tuple, dict[str, float]] = defaultdict(dict)
    for (bucket, op, le), n in sums(session, LATENCY, since, names, ("bucket", "op", "le")).items():
        latency[(bucket, op)][str(le)] = n
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for key in sorted(set(calls) | set(errors), key=lambda k: tuple(str(v) for v in k)):
        bucket, op = str(key[0]), str(key[1])
        n, failed = calls.get(key, 0.0), errors.get(key, 0.0)
        out[bucket][op] = {
            "requests": int(n),
            "requests_per_s": n / seconds,
            "errors": int(failed),
            "error_ratio": failed / n if n else None,
            "p50_s": quantile(0.5, latency.get(key, {})),
            "p95_s": quantile(0.95, latency.get(key, {})),
        }
    return out


def _totals(ops: dict[str, dict[str, Any]], seconds: float) -> dict[str, Any]:
    calls = sum(o["requests"] for o in ops.values())
    errors = sum(o["errors"] for o in ops.values())
    return {
        "requests": calls,
        "requests_per_s": calls / seconds,
        "errors": errors,
        "error_ratio": errors / calls if calls else None,
    }


def growth(session: Session, since: datetime, buckets: Iterable[str] | None) -> dict[str, float]:
    """bucket -> bytes at its latest count in the window less bytes at its first one; only
    each bucket's first and last points are read (the window may hold a million)."""
    m = InfrastructureMetric
    dialect = session.get_bind().dialect.name
    bucket = tag_value(dialect, m.tags, "bucket")
    where: list[ColumnElement[bool]] = [
        m.metric_type == BYTES,
        m.service_name == SERVICE,
        m.timestamp >= since,
    ]
    if buckets is not None:
        where.append(bucket.in_(list(buckets)))
    ends = (
        select(
            bucket.label("bucket"), func.min(m.timestamp).label("first"), func.max(m.timestamp).label("last")
        )
        .where(*where)
        .group_by(bucket)
        .subquery()
    )
    stmt = (
        select(ends.c.bucket, m.timestamp == ends.c.last, m.value)
        .join(
            ends, and_(bucket == ends.c.bucket, or_(m.timestamp == ends.c.first, m.timestamp == ends.c.last))
        )
        .where(*where)
    )
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for name, is_last, value in session.execute(stmt):
        if is_last:
            last[name] = value
        else:
            first[name] = value
    return {name: value - first.get(name, value) for name, value in last.items()}


def bucket_row(
    row: StorageBucket, ops: dict[str, dict[str, Any]], grew: float | None, seconds: float
) -> dict:
    """One bucket's figures as the API answers them."""
    return {
        "bucket": row.name,
        "objects": row.objects,
        "bytes": row.used_bytes,
        "quota_bytes": row.quota_bytes,
        "used_ratio": row.used_bytes / row.quota_bytes if row.quota_bytes else None,
        "usage_at": row.usage_at,
        "growth_bytes": grew,
        **_totals(ops, seconds),
        "ops": ops,
    }


def overview(session: Session, visible: set[str] | None, window: str) -> dict[str, Any]:
    """Every bucket in ``visible`` (None: all), first MAX_BUCKETS by name, over ``window``."""
    since, until, _ = window_of(window)
    query = select(StorageBucket).order_by(StorageBucket.name).limit(MAX_BUCKETS + 1)
    if visible is not None:
        query = query.where(StorageBucket.name.in_(sorted(visible)))
    rows = list(session.scalars(query))
    names = [r.name for r in rows[:MAX_BUCKETS]]
    ops = requests_by_op(session, since, until, names)
    grew = growth(session, since, names)
    seconds = (until - since).total_seconds()
    buckets = [bucket_row(r, ops.get(r.name, {}), grew.get(r.name), seconds) for r in rows[:MAX_BUCKETS]]
    return {"window": window, "since": since, "until": until, "buckets": buckets,
            "truncated": len(rows) > MAX_BUCKETS}  # fmt: skip


def top_prefixes(session: Session, row: StorageBucket) -> list[dict[str, Any]]:
    """The largest prefixes at the bucket's last full count."""
    if row.usage_at is None:
        return []
    m = InfrastructureMetric
    dialect = session.get_bind().dialect.name
    stmt = select(m.tags, m.value).where(
        m.metric_type == PREFIX_BYTES, m.service_name == SERVICE, m.timestamp >= row.usage_at,
        tag_value(dialect, m.tags, "bucket") == row.name,
    )  # fmt: skip
    found = {str(tags.get("prefix")): value for tags, value in session.execute(stmt)}
    ranked = sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PREFIXES]
    return [{"prefix": prefix, "bytes": int(size)} for prefix, size in ranked]


def _series(session: Session, metric: str, bucket: str, since: datetime, until: datetime, step: int,
            *, agg: str, oldest_1m: datetime, group_by: str | None = None) -> list[dict]:  # fmt: skip
    query = SeriesQuery(metric_type=metric, start=since, end=until, step_s=step, agg=agg,
                        service_name=SERVICE, tags={"bucket": bucket}, group_by=group_by)  # fmt: skip
    # The same choice of raw points or roll-ups as GET /api/v1/metrics (ops/queries.py).
    return store_series(session, query, pick_source(query, oldest_1m=oldest_1m))


def per_second(series: list[dict], step: int) -> list[dict]:
    """Counts per step -> rates per second, each point."""
    return [{**s, "points": [[at, None if v is None else v / step] for at, v in s["points"]]} for s in series]


def figures(session: Session, row: StorageBucket, window: str) -> dict[str, Any]:
    """One bucket over ``window`` (a WINDOWS name): its overview row (figures, growth, ops),
    the window's bounds and its top prefixes; what the API's detail and the console's bucket
    page both show."""
    since, until, _ = window_of(window)
    ops = requests_by_op(session, since, until, [row.name]).get(row.name, {})
    grew = growth(session, since, [row.name]).get(row.name)
    return {"window": window, "since": since, "until": until,
            **bucket_row(row, ops, grew, (until - since).total_seconds()),
            "top_prefixes": top_prefixes(session, row)}  # fmt: skip


def bucket_detail(
    session: Session, row: StorageBucket, window: str, *, rollup_1m_days: int
) -> dict[str, Any]:
    """One bucket over ``window``: its figures, series of its size and request rates per op,
    and its top prefixes; 1-minute roll-ups are kept ``rollup_1m_days`` (retention)."""
    found = figures(session, row, window)
    since, until, step = found["since"], found["until"], WINDOWS[window][1]
    oldest_1m = until - timedelta(days=rollup_1m_days)
    series = {
        "bytes": _series(session, BYTES, row.name, since, until, step, agg="max", oldest_1m=oldest_1m),
        "objects": _series(session, OBJECTS, row.name, since, until, step, agg="max", oldest_1m=oldest_1m),
        "requests_per_s": per_second(
            _series(
                session, REQUESTS, row.name, since, until, step, agg="sum", oldest_1m=oldest_1m, group_by="op"
            ),
            step,
        ),
        "errors_per_s": per_second(
            _series(
                session, ERRORS, row.name, since, until, step, agg="sum", oldest_1m=oldest_1m, group_by="op"
            ),
            step,
        ),
    }
    return {**found, "step_s": step, "series": series}
