"""Objects in managed buckets, streamed both ways: an upload pulls its body from a reader
one part at a time (multipart above the part size), a download hands out the server's
answer chunk by chunk, so no object is ever whole in memory. coreplane enforces what S3
cannot: the bucket's quota and the largest object size, before anything is sent when the
length is declared, and as the bytes pass when it is not.

The API runs an upload in a worker thread with ``BodyReader`` over the request's async
stream; an application passes any file-like. Every S3 call goes through ``Storage.call``."""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import re
import unicodedata
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO, Protocol
from urllib.parse import quote

import anyio.from_thread
from minio.commonconfig import CopySource
from minio.datatypes import Object
from minio.error import S3Error
from minio.sse import Sse, SseCustomerKey, SseS3
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.clock import utcnow
from controlplane.errors import NotFound, Rejected, TooLarge, Unavailable, Unreadable
from controlplane.storage import metrics, names
from controlplane.storage.client import Storage
from controlplane.store.models import StorageBucket

MIB = 1024 * 1024
GB = 1024**3
# A download's chunks. Each is one hop through the thread pool to the event loop, and that
# per-chunk cost set the pace: 4 parallel 256 MiB downloads ran at 0.60 of the raw SDK's
# with 1 MiB chunks, 0.78 with 4 MiB, 0.86 with 8 MiB (a thread reading ahead did not help).
# 4 MiB: a download holds about two chunks (ours and the socket's buffer), 8 MiB per client.
CHUNK = 4 * MIB
MAX_PARTS = 10_000  # S3's multipart cap
MAX_METADATA = 20  # user metadata entries per object
MAX_METADATA_BYTES = 2048  # names and values together: S3's own limit on user metadata
MAX_LIST = 1000
STATS_AT_ONCE = 16  # a listing's concurrent stats for encryption (a client pools 32 connections)
SSE_C_HEADER = "X-Coreplane-SSE-C-Key"
_META_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_META_PREFIX = "x-amz-meta-"


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


@dataclass
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str
    last_modified: datetime | None
    content_type: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    version_id: str | None = None
    is_latest: bool = True
    is_delete_marker: bool = False
    encryption: str = "none"  # none | SSE-S3 | SSE-C | unknown

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["last_modified"] = self.last_modified.isoformat() if self.last_modified else None
        return found


# -- encryption -----------------------------------------------------------------------------


def encryption_of(headers: Any) -> str:
    """An object's encryption from a stat or GET answer's headers."""
    lowered = {str(k).lower(): str(v) for k, v in dict(headers or {}).items()}
    if "x-amz-server-side-encryption-customer-algorithm" in lowered:
        return "SSE-C"
    algorithm = lowered.get("x-amz-server-side-encryption")
    if algorithm is None:
        return "none"
    return "SSE-S3" if algorithm == "AES256" else "unknown"


def sse_c(key_b64: str | None, field: str = SSE_C_HEADER) -> SseCustomerKey | None:
    """The customer key of SSE-C from its base64 (None: no key given); Rejected naming
    ``field`` when it is not base64 of 32 bytes."""
    if key_b64 is None:
        return None
    try:
        raw = base64.b64decode(key_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise Rejected.field(
            f"{field} must be the base64 of a 32-byte key (AES-256)", field, "bad key", "header"
        )
    return SseCustomerKey(raw)


def _read_call(
    storage: Storage,
    op: str,
    bucket: str,
    customer_key: SseCustomerKey | None,
    fn: Any,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """A stat or GET, where the server's refusals of a missing or wrong SSE-C key (400
    without a code on HEAD, 403 on a wrong key) become a 4xx naming the key's header."""
    try:
        return storage.call(op, bucket, fn, *args, **kwargs)
    except Rejected as exc:  # the reason is the S3 code (client.domain_error)
        if customer_key is None and exc.reason in ("BadRequest", "InvalidArgument", "InvalidRequest"):
            raise Rejected.field(
                f"{bucket}/{args[1] if len(args) > 1 else ''} is encrypted with a customer key (SSE-C), "
                f"or the request is malformed: send the key in {SSE_C_HEADER}",
                SSE_C_HEADER,
                "key needed",
                "header",
            ) from exc
        raise
    except Unavailable as exc:  # AccessDenied is coreplane's credentials, unless a key was sent
        cause = exc.__cause__
        if customer_key is not None and isinstance(cause, S3Error) and cause.code == "AccessDenied":
            raise Rejected.field(
                f"the key in {SSE_C_HEADER} is not the one this object was stored with",
                SSE_C_HEADER,
                "wrong key",
                "header",
            ) from exc
        raise


# -- reading ----------------------------------------------------------------------------------


def content_disposition(key: str) -> str:
    """``attachment`` with the key's last segment as the file name: an ASCII fallback
    (anything but letters, digits and ``._-`` becomes ``_``) and the exact name in RFC 5987
    form, so no quote, semicolon or line break in a key can forge another header field, and
    the header stays latin-1 whatever the key holds."""
    name = key.rstrip("/").rsplit("/", 1)[-1] or "download"
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fallback = "".join(c if c.isalnum() or c in "._-" else "_" for c in plain)[:150]
    return f"attachment; filename=\"{fallback or 'download'}\"; filename*=UTF-8''{quote(name, safe='')}"


def user_metadata(headers: Any) -> dict[str, str]:
    """The ``x-amz-meta-*`` entries of a GET or HEAD answer's headers (or a stat's metadata),
    names lower-cased without the prefix."""
    return {
        str(k).lower()[len(_META_PREFIX) :]: str(v)
        for k, v in dict(headers or {}).items()
        if str(k).lower().startswith(_META_PREFIX)
    }


def info_of(bucket: str, key: str, found: Object) -> ObjectInfo:
    """An entry of a listing (latest objects or versions) or a stat's answer as ObjectInfo."""
    return ObjectInfo(
        bucket=bucket,
        key=key,
        size=found.size or 0,
        etag=(found.etag or "").strip('"'),
        last_modified=found.last_modified,
        content_type=found.content_type,
        metadata=user_metadata(found.metadata),
        version_id=found.version_id,
        is_latest=found.is_latest in (None, "true", True),
        is_delete_marker=found.is_delete_marker,
        encryption=encryption_of(found.metadata) if found.metadata is not None else "unknown",
    )


def stat(
    storage: Storage,
    bucket: str,
    key: str,
    *,
    version_id: str | None = None,
    ssec: SseCustomerKey | None = None,
) -> ObjectInfo:
    """The object's size, type, metadata, version and encryption (NotFound when absent)."""
    found = _read_call(
        storage, "stat_object", bucket, ssec, storage.client.stat_object, bucket, key,
        ssec=ssec, version_id=version_id,
    )  # fmt: skip
    return info_of(bucket, key, found)


def download(
    storage: Storage,
    bucket: str,
    key: str,
    *,
    version_id: str | None = None,
    offset: int = 0,
    length: int | None = None,
    ssec: SseCustomerKey | None = None,
) -> tuple[ObjectInfo, Iterator[bytes]]:
    """The object's info (``size`` is the whole object's, even for a range) and its bytes
    from ``offset`` (``length`` of them; None: to the end) as an iterator of chunks that
    releases the connection when it ends or is closed."""
    if length is not None and length <= 0:
        raise Rejected.field("a range must hold at least one byte", "Range", "empty range", "header")
    answer = _read_call(
        storage, "get_object", bucket, ssec, storage.client.get_object, bucket, key,
        offset=offset, length=length or 0, ssec=ssec, version_id=version_id,
    )  # fmt: skip
    headers = answer.headers
    size = int(headers.get("content-length") or 0)
    total = headers.get("content-range", "").rpartition("/")[2]
    info = ObjectInfo(
        bucket=bucket,
        key=key,
        size=int(total) if total.isdigit() else size,
        etag=(headers.get("etag") or "").strip('"'),
        last_modified=_http_date(headers.get("last-modified")),
        content_type=headers.get("content-type"),
        metadata=user_metadata(headers),
        version_id=headers.get("x-amz-version-id"),
        encryption=encryption_of(headers),
    )
    return info, _chunks(answer, metrics.bucket_label(bucket))


class Unsatisfiable(Exception):
    """A Range asks for bytes the object does not have (HTTP's 416); ``size`` is the object's."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the object is {size} bytes; the range asks past it")
        self.size = size


@dataclass
class Read:
    """A GET's answer: the object's info, its bytes, and the span they are (None: all)."""

    info: ObjectInfo
    chunks: Iterator[bytes]
    span: tuple[int, int] | None


def read(
    storage: Storage,
    bucket: str,
    key: str,
    range_header: str | None = None,
    *,
    version_id: str | None = None,
    ssec: SseCustomerKey | None = None,
) -> Read:
    """The object's bytes for a ``Range`` header (``byte_range``'s rule) in one GET; only a
    suffix (``bytes=-n``) stats for the size first. Unsatisfiable when the object has no such
    bytes (the server's InvalidRange)."""
    asked = _asked(range_header)
    if asked is None:
        info, chunks = download(storage, bucket, key, version_id=version_id, ssec=ssec)
        return Read(info, chunks, None)
    first, last = asked
    if first is None or (last is not None and last < first):
        found = stat(storage, bucket, key, version_id=version_id, ssec=ssec)
        span = byte_range(range_header, found.size)
        if not isinstance(span, tuple):
            raise Unsatisfiable(found.size)
        (first, last), version_id = span, found.version_id or version_id
    length = None if last is None else last - first + 1
    try:
        info, chunks = download(
            storage, bucket, key, version_id=version_id, offset=first, length=length, ssec=ssec
        )
    except Rejected as exc:
        if exc.reason != "InvalidRange":
            raise
        raise Unsatisfiable(stat(storage, bucket, key, version_id=version_id, ssec=ssec).size) from exc
    if first >= info.size:  # "bytes=0-" goes unranged: an empty object answers 200
        for _ in chunks:  # empty: this only releases the connection
            pass
        raise Unsatisfiable(info.size)
    return Read(info, chunks, (first, info.size - 1 if last is None else min(last, info.size - 1)))


def _asked(header: str | None) -> tuple[int | None, int | None] | None:
    """(first, last) a ``Range: bytes=...`` header names, either None (first None: the last
    ``last`` bytes); None for the whole object (no header, or one ignored: see byte_range)."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, dash, last = header[len("bytes=") :].strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()):
        return None
    if last and not last.isdigit():
        return None
    return (int(first) if first else None), (int(last) if last else None)


def byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(first, last) byte of a ``Range: bytes=...`` header against ``size``; None for the
    whole object (no header, or one this server ignores, as HTTP allows: several ranges, or
    another unit); "unsatisfiable" when it asks past the end."""
    asked = _asked(header)
    if asked is None:
        return None
    first, last = asked
    if first is None:  # the last n bytes
        n = last or 0
        return (max(size - n, 0), size - 1) if n and size else "unsatisfiable"
    end = min(last, size - 1) if last is not None else size - 1
    if first >= size or end < first:
        return "unsatisfiable"
    return first, end


def _chunks(answer: Any, label: str) -> Iterator[bytes]:
    try:
        for chunk in answer.stream(CHUNK):
            metrics.BYTES.labels("out", label).inc(len(chunk))
            yield chunk
    finally:
        answer.close()
        answer.release_conn()


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def listing(
    storage: Storage,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "/",
    start_after: str | None = None,
    limit: int = 100,
    with_encryption: bool = False,
) -> dict[str, Any]:
    """One page of the bucket's latest objects under ``prefix``, with the common prefixes
    when ``delimiter`` is "/" ("" lists the whole tree); "next" is the ``start_after`` of the
    next page (None: this is the last). ``with_encryption`` stats each object for it."""
    prefix = names.key_prefix(prefix)
    if start_after:
        names.key_prefix(start_after, "start_after")
    if delimiter not in ("", "/"):
        raise Rejected.field("delimiter must be '/' or empty (the whole tree)", "delimiter", "unsupported")
    if not 1 <= limit <= MAX_LIST:
        raise Rejected.field(f"limit must be 1 to {MAX_LIST}", "limit", "out of range")
    page = storage.call("list_objects", bucket, _page, storage, bucket, prefix, delimiter, start_after, limit)
    items, more = page[:limit], len(page) > limit
    objects = [info_of(bucket, o.object_name or "", o) for o in items if not o.is_dir]  # "unknown"
    if with_encryption and objects:
        # A listing does not say: one HEAD each, STATS_AT_ONCE at a time instead of 100 in a row.
        with ThreadPoolExecutor(max_workers=min(STATS_AT_ONCE, len(objects))) as pool:
            found = list(pool.map(lambda info: _encryption(storage, bucket, info.key), objects))
        for info, encryption in zip(objects, found, strict=True):
            info.encryption = encryption
    return {
        "objects": [o.as_dict() for o in objects],
        "prefixes": [o.object_name for o in items if o.is_dir],
        "next": items[-1].object_name if more and items else None,
    }


def _page(
    storage: Storage, bucket: str, prefix: str, delimiter: str, start_after: str | None, limit: int
) -> list[Object]:
    """The first ``limit`` entries (keys and common prefixes, in key order) after
    ``start_after``, plus one more when there are more."""
    found: list[Object] = []
    # minio yields each answer's keys, then its common prefixes: not one sorted sequence.
    # Asking for limit + 1 entries in one answer (max-keys, which the public list_objects
    # does not take) makes the first answer hold exactly the entries this page shows, which
    # are then sorted; anything read past it only says there is more.
    entries = storage.client._list_objects(
        bucket,
        delimiter=delimiter or None,
        max_keys=min(limit + 1, MAX_LIST),
        prefix=prefix or None,
        start_after=start_after or None,
        encoding_type="url",
    )
    for item in entries:
        # A page that ended on a common prefix resumes after it: S3 would list that prefix
        # again, since its keys sort after the prefix itself.
        if item.is_dir and start_after and item.object_name == start_after:
            continue
        found.append(item)
        if len(found) > limit:
            break
    head = sorted(found[:limit], key=lambda o: o.object_name or "")
    return head + found[limit:]


def _encryption(storage: Storage, bucket: str, key: str) -> str:
    try:
        return stat(storage, bucket, key).encryption
    except Rejected:
        return "SSE-C"  # the server will not describe it without its key
    except NotFound:
        return "unknown"


# -- writing -------------------------------------------------------------------------------------


class BodyReader:
    """A blocking file-like over an async byte stream, for a worker thread started by
    ``anyio.to_thread.run_sync``: each ``read`` pulls the next chunks through the event loop,
    so the thread holds at most the part being read, never the whole body."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._ended = False

    async def _pull(self) -> bytes | None:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None

    def read(self, n: int = -1, /) -> bytes:
        # Fill up to n before answering: minio appends what each read returns to the part,
        # and many small appends would copy the part over and over.
        while not self._ended and (n < 0 or len(self._buffer) < n):
            chunk = anyio.from_thread.run(self._pull)
            if chunk is None:
                self._ended = True
            else:
                self._buffer += chunk
        if n < 0 or len(self._buffer) <= n:
            out = bytes(self._buffer)
            self._buffer.clear()
            return out
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


class _Metered:
    """The body as minio reads it, refused the moment it breaks a rule: shorter or longer
    than its declared length, or past ``limit`` (the quota's room or the largest object).
    Raising inside a read makes minio abort its multipart upload, so nothing is stored."""

    def __init__(self, inner: Readable, declared: int | None, limit: int, limit_says: str) -> None:
        self.inner, self.declared, self.limit, self.limit_says = inner, declared, limit, limit_says
        self.count = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self.inner.read(n)
        self.count += len(data)
        if self.count > self.limit:
            raise TooLarge.field(self.limit_says, "body", "too large", "body")
        if self.declared is not None:
            if not data and n != 0 and self.count < self.declared:
                raise _length_error(f"the body ended after {self.count} of {self.declared} bytes")
            if self.count > self.declared or (self.count == self.declared and self.inner.read(1)):
                raise _length_error(f"the body is longer than its {self.declared} bytes")
        return data


def _length_error(detail: str) -> Rejected:
    return Unreadable.field(
        f"{detail}: Content-Length must be the body's exact size", "Content-Length", "wrong length", "header"
    )


def check_metadata(metadata: dict[str, str], field: str = "metadata") -> dict[str, str]:
    """User metadata within S3's rules and coreplane's caps (names of letters, digits, '-'
    and '_'; printable ASCII values; 20 entries and 2 KB in all)."""
    if len(metadata) > MAX_METADATA:
        raise TooLarge.field(
            f"{len(metadata)} metadata entries; the most is {MAX_METADATA}", field, "too many"
        )
    total = 0
    for name, value in metadata.items():
        if not _META_NAME.match(name):
            raise Rejected.field(
                f"metadata name {name[:40]!r}: letters, digits, '-' and '_' only",
                f"{field}.{name[:40]}",
                "bad name",
            )
        if not (value.isascii() and value.isprintable()):
            raise Rejected.field(
                f"metadata {name!r}: the value must be printable ASCII", f"{field}.{name}", "bad value"
            )
        total += len(name) + len(value)
    if total > MAX_METADATA_BYTES:
        raise TooLarge.field(
            f"metadata is {total} bytes; the most is {MAX_METADATA_BYTES}", field, "too large"
        )
    return {name.lower(): value for name, value in metadata.items()}


def check_content_type(content_type: str | None) -> str:
    value = content_type or "application/octet-stream"
    if len(value) > 255 or not (value.isascii() and value.isprintable()):
        raise Rejected.field(
            "Content-Type must be printable ASCII, 255 characters at most",
            "Content-Type",
            "bad type",
            "header",
        )
    return value


def room(storage: Storage, row: StorageBucket) -> tuple[int, str]:
    """How many bytes one more object may hold in ``row`` (the largest object, or what the
    quota has left by the last usage count) and what to say past it."""
    largest = int(storage.settings.max_object_gb * GB)
    used = row.used_bytes + storage.usage.pending_bytes(row.name)  # with this process's unflushed writes
    if row.quota_bytes is None or row.quota_bytes - used >= largest:
        return largest, f"an object is {largest} bytes at most (storage.max_object_gb)"
    left = max(row.quota_bytes - used, 0)
    return left, (
        f"bucket {row.name!r} has {left} bytes left of its {row.quota_bytes}-byte quota "
        f"({used} used): free some space or raise the quota"
    )


def part_size(storage: Storage, length: int | None) -> int:
    """The multipart part size for ``length`` bytes (None: unknown): storage.part_size_mb,
    larger when the object would need more than S3's MAX_PARTS parts."""
    part = storage.settings.part_size_mb * MIB
    if length is None:
        return part
    return max(part, math.ceil(length / MAX_PARTS / MIB) * MIB)


def upload(
    storage: Storage,
    row: StorageBucket,
    key: str,
    reader: Readable | BinaryIO,
    *,
    length: int | None,
    content_type: str | None = None,
    metadata: dict[str, str] | None = None,
    sse: Sse | None = None,
) -> ObjectInfo:
    """``reader``'s bytes stored as ``key`` (``length`` None: unknown, sent in parts), and
    noted in the bucket's usage (``storage.usage``, controlplane/storage/usage.py). Refused before anything is
    sent when ``length`` is over the quota or the largest object, and aborted as soon as the
    bytes pass it. No store session: uploads are not audited one by one (keeping small
    writes cheap); the caller's own transaction is not held while the bytes move."""
    names.object_key(key)
    content_type = check_content_type(content_type)
    meta = {_META_PREFIX + k: v for k, v in check_metadata(metadata or {}).items()}
    limit, says = room(storage, row)
    part = part_size(storage, length)
    if length is not None:
        if length < 0:
            raise Rejected.field(
                "Content-Length must not be negative", "Content-Length", "negative", "header"
            )
        if length > limit:
            raise TooLarge.field(
                f"{says}; this body declares {length}", "Content-Length", "too large", "header"
            )
    else:
        limit = min(limit, part * MAX_PARTS)
    metered = _Metered(reader, length, limit, says)
    with server_key_rules("key", "path"):
        written = storage.call(
            "put_object", row.name, storage.client.put_object, row.name, key, metered,
            length if length is not None else -1,
            content_type=content_type, metadata=meta or None, sse=sse, part_size=part,
        )  # fmt: skip
    metrics.BYTES.labels("in", metrics.bucket_label(row.name)).inc(metered.count)
    storage.usage.note(row.name, metered.count, 1)
    return ObjectInfo(
        bucket=row.name,
        key=key,
        size=metered.count,
        etag=(written.etag or "").strip('"'),
        last_modified=utcnow().replace(tzinfo=UTC),  # as the server's answers give it
        content_type=content_type,
        metadata={k[len(_META_PREFIX) :]: v for k, v in meta.items()},
        version_id=written.version_id,
        encryption=_sse_name(sse),
    )


@contextlib.contextmanager
def server_key_rules(field: str, kind: str) -> Iterator[None]:
    """A key the server itself refuses named as the caller's field: S3 servers may be
    stricter than S3's 1,024 bytes (SeaweedFS takes 255 bytes between two '/')."""
    try:
        yield
    except Rejected as exc:
        if exc.reason != "KeyTooLongError":
            raise
        raise Rejected.field(
            f"the S3 server refused the key as too long ({exc}): shorten it, or split it with '/' "
            "(some servers cap each segment at 255 bytes)",
            field,
            "key too long for the server",
            kind,
        ) from exc


def _sse_name(sse: Sse | None) -> str:
    if isinstance(sse, SseCustomerKey):
        return "SSE-C"
    if isinstance(sse, SseS3):
        return "SSE-S3"
    return "none"


def copy(
    session: Session,
    storage: Storage,
    row: StorageBucket,
    src_key: str,
    dst_bucket_row: StorageBucket,
    dst_key: str,
    *,
    actor: str,
    version_id: str | None = None,
    ssec: SseCustomerKey | None = None,
) -> ObjectInfo:
    """``row``/``src_key`` (its ``version_id``) copied server-side to ``dst_bucket_row``/
    ``dst_key`` with its type and metadata, within the target's quota; an SSE-C source
    needs its key, and the copy is encrypted with the same one."""
    names.object_key(src_key, "source_key", "body")
    names.object_key(dst_key, "key", "body")
    source = stat(storage, row.name, src_key, version_id=version_id, ssec=ssec)
    limit, says = room(storage, dst_bucket_row)
    if source.size > limit:
        raise TooLarge.field(f"{says}; the source is {source.size} bytes", "source_key", "too large", "body")
    origin = CopySource(row.name, src_key, version_id=version_id, ssec=ssec)
    dst = dst_bucket_row.name
    with server_key_rules("key", "body"):
        written = storage.call("copy_object", dst, storage.client.copy_object, dst, dst_key, origin, sse=ssec)
    storage.usage.note(dst, source.size, 1)
    audit.record(
        session,
        actor=actor,
        action="storage.object.copy",
        target=f"{dst}/{dst_key}",
        details={"source": f"{row.name}/{src_key}", "version_id": version_id, "size": source.size},
    )
    # The copy is the source's bytes, type and metadata under the server's new etag and
    # version: no stat of the destination needed (upload answers the same way).
    return ObjectInfo(
        bucket=dst,
        key=dst_key,
        size=source.size,
        etag=(written.etag or "").strip('"'),
        last_modified=written.last_modified or utcnow().replace(tzinfo=UTC),
        content_type=source.content_type,
        metadata=dict(source.metadata),
        version_id=written.version_id,
        encryption="SSE-C" if ssec is not None else encryption_of(written.http_headers),
    )


def remove(
    session: Session,
    storage: Storage,
    row: StorageBucket,
    key: str,
    *,
    actor: str,
    version_id: str | None = None,
) -> dict[str, Any]:
    """Delete ``key``: with versioning on and no ``version_id`` that leaves a delete marker
    (the data stays, undeletable); with a ``version_id`` that version is gone for good.
    NotFound when there is no such object (without a version id)."""
    names.object_key(key)
    client, bucket = storage.client, row.name
    size, marker = 0, False  # a version_id deletes that version for good: no marker to ask about
    if version_id is None:
        with contextlib.suppress(Rejected):  # SSE-C: no size without the key
            size = stat(storage, bucket, key).size
        versioning = storage.call("get_bucket_versioning", bucket, client.get_bucket_versioning, bucket)
        marker = versioning.status == "Enabled"
    storage.call("remove_object", bucket, client.remove_object, bucket, key, version_id=version_id)
    if not marker:
        storage.usage.note(bucket, -size, -1 if version_id is None or size else 0)
    audit.record(
        session,
        actor=actor,
        action="storage.object.delete",
        target=f"{bucket}/{key}",
        details={"version_id": version_id, "delete_marker": marker},
    )
    return {"bucket": bucket, "key": key, "version_id": version_id, "delete_marker": marker}
