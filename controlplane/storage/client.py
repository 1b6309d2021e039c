"""The S3 clients storage uses (the `minio` SDK) and the one wrapper every call goes
through: ``Storage.call`` times it into storage's metrics and turns the server's answer into
a domain error, so the API and the console never see an S3Error or a socket error."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, TypeVar, get_args

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from controlplane.errors import Conflict, NotFound, Rejected, Unavailable
from controlplane.settings import Settings, StorageSettings
from controlplane.storage import metrics
from controlplane.storage.usage import Usage

if TYPE_CHECKING:
    from controlplane.storage.analytics import Count

T = TypeVar("T")

# Where a mirror writes: the primary S3 endpoint or storage.mirror_endpoint (the API's type too).
Endpoint = Literal["primary", "mirror"]
ENDPOINTS: tuple[str, ...] = get_args(Endpoint)

_NOT_FOUND = {"NoSuchBucket", "NoSuchKey", "NoSuchVersion", "NoSuchUpload", "NoSuchTagSet",
              "NoSuchBucketPolicy", "NoSuchLifecycleConfiguration", "ResourceNotFound",
              "ServerSideEncryptionConfigurationNotFoundError"}  # fmt: skip
_CONFLICT = {"BucketNotEmpty", "BucketAlreadyOwnedByYou", "BucketAlreadyExists", "OperationAborted"}
# NotImplemented and MethodNotAllowed: a feature this server lacks, a refusal and not an outage.
_REJECTED = {"InvalidArgument", "InvalidRequest", "InvalidRange", "EntityTooLarge", "EntityTooSmall",
             "InvalidBucketName", "KeyTooLongError", "MalformedXML", "MalformedPolicy", "InvalidDigest",
             "BadDigest", "IncompleteBody", "InvalidPart", "InvalidEncryptionAlgorithmError",
             "NotImplemented", "MethodNotAllowed"}  # fmt: skip


class NotConfigured(Unavailable):
    """No S3 endpoint is set (``COREPLANE_S3__ENDPOINT``): storage is off."""


def configured(storage: Storage | None) -> Storage:
    """``storage`` itself; NotConfigured (503) when there is none: the one "not configured"
    answer of the API and the console."""
    if storage is None:
        raise NotConfigured("object storage is not configured: set COREPLANE_S3__ENDPOINT (host:port)")
    return storage


def _http() -> urllib3.PoolManager:
    # Enough connections for the parallel part uploads of a few large objects at once; a
    # stuck server fails a call after the read timeout instead of holding a request forever.
    return urllib3.PoolManager(
        maxsize=32,
        timeout=urllib3.Timeout(connect=5, read=120),
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )


@dataclass
class Rounds:
    """What the leader's storage rounds remember from one round to the next, in this app's
    memory (a new leader starts over: each bucket's rules run once, an unfinished count
    restarts). Per app, like the usage: two apps in one process must not purge each
    other's as buckets they do not know."""

    lifecycle_ran: dict[str, datetime] = field(default_factory=dict)  # bucket -> last run
    partial: dict[str, Count] = field(default_factory=dict)  # bucket -> unfinished count


@dataclass
class Storage:
    """The primary S3 endpoint (``s3``), the mirror endpoint (``storage.mirror_*``; the
    primary when unset), storage's settings, the usage its writes moved and what its
    rounds remember. Built once per app (``Storage.of``)."""

    client: Minio
    mirror: Minio
    settings: StorageSettings
    endpoint: str
    usage: Usage = field(default_factory=Usage)
    rounds: Rounds = field(default_factory=Rounds)

    @classmethod
    def of(cls, settings: Settings) -> Storage | None:
        """The clients of ``settings``' endpoints; None when no S3 endpoint is set."""
        s3 = settings.s3
        if not s3.endpoint:
            return None
        client = Minio(
            s3.endpoint,
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            secure=s3.secure,
            http_client=_http(),
        )
        st = settings.storage
        mirror = client
        if st.mirror_endpoint:
            mirror = Minio(
                st.mirror_endpoint,
                access_key=st.mirror_access_key,
                secret_key=st.mirror_secret_key,
                secure=st.mirror_secure,
                http_client=_http(),
            )
        return cls(client, mirror, st, s3.endpoint)

    def target(self, endpoint: str) -> Minio:
        """The client of a mirror's ``target_endpoint`` ("primary" or "mirror")."""
        if endpoint not in ENDPOINTS:
            raise Rejected.field(
                f"target_endpoint must be one of {', '.join(ENDPOINTS)}", "target_endpoint", "unknown", "body"
            )
        return self.client if endpoint == "primary" else self.mirror

    def call(self, op: str, bucket: str, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """``fn(*args, **kwargs)`` (a minio call), timed as ``op`` on ``bucket``; S3 errors
        and unreachable servers become domain errors."""
        label = metrics.bucket_label(bucket)
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except S3Error as exc:
            metrics.ERRORS.labels(op, label, exc.code or "S3Error").inc()
            raise domain_error(exc, bucket) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            metrics.ERRORS.labels(op, label, type(exc).__name__).inc()
            raise Unavailable(f"the S3 server did not answer {op} on {bucket!r}: {exc}") from exc
        finally:
            metrics.REQUESTS.labels(op, label).observe(time.perf_counter() - started)


def domain_error(exc: S3Error, bucket: str) -> Exception:
    """The domain error an S3 error code means."""
    code = exc.code or ""
    what = exc.message or code
    where = f"{bucket}/{exc.object_name}" if exc.object_name else bucket
    if code in _NOT_FOUND:
        return NotFound(f"{what} ({code}: {where})")
    if code in _CONFLICT:
        return Conflict(f"{what} ({code}: {where})")
    # A bare 400 (minio names it BadRequest: a HEAD the server refuses, e.g. SSE-C without
    # its key or a malformed version id) is the request's fault, not the server's.
    if code in _REJECTED or code == "BadRequest" or (not code and exc.response.status == 400):
        return Rejected(f"the S3 server refused it: {what} ({code or 400})", reason=code or "BadRequest")
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        # coreplane's own credentials: a misconfiguration to fix, not the caller's fault.
        return Unavailable(f"the S3 server refused coreplane's credentials for {where}: {what} ({code})")
    return Unavailable(f"the S3 server failed: {what} ({code or exc.response.status})")
