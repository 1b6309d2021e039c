"""The storage figures each coreplane process serves on /metrics: every S3 call the
library makes, timed by operation and bucket, and its errors by S3 error code. Buckets are
labelled by name up to ``MAX_BUCKETS`` of them, the rest ``other``."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from controlplane.labels import CappedLabels

MAX_BUCKETS = 200
bucket_label = CappedLabels(MAX_BUCKETS)  # a bucket's name as a label value

REQUESTS = Histogram(
    "coreplane_storage_request_seconds",
    "S3 calls coreplane's storage library made, by operation and bucket.",
    ["op", "bucket"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
ERRORS = Counter(
    "coreplane_storage_errors_total",
    "S3 calls that failed, by operation, bucket and S3 error code (or the exception's name).",
    ["op", "bucket", "code"],
)
BYTES = Counter(
    "coreplane_storage_bytes_total",
    "Object bytes moved through the storage library, by direction (in: uploads, out: downloads) and bucket.",
    ["direction", "bucket"],
)
