"""S3 object server through the minio SDK: health, buckets, objects and bytes per
bucket, and PUT/GET/DELETE latency of a small canary object."""

from __future__ import annotations

import io
import time
import uuid

from minio import Minio

from agents.collectors import Observation
from agents.collectors.base import Every
from agents.config import TargetConfig

CANARY_BUCKET = "coreplane-canary"


class S3Collector:
    def __init__(self, target: TargetConfig) -> None:
        opts = target.options
        self.client = Minio(
            target.address,
            access_key=opts.get("access_key"),
            secret_key=opts.get("secret_key"),
            secure=bool(opts.get("secure", False)),
        )
        # Listing every object and writing a canary are heavy: the bucket list (liveness)
        # runs on every probe, these at their own pace.
        self.count = Every(float(opts.get("count_interval_s", 60)))
        self.canary = Every(float(opts.get("canary_interval_s", 10)))

    def collect(self) -> Observation:
        obs = Observation()
        buckets = self.client.list_buckets()
        obs.add("coreplane_s3_up", 1)
        obs.add("coreplane_s3_buckets", len(buckets))
        if self.count.due():
            for bucket in buckets:
                count = size = 0
                for item in self.client.list_objects(bucket.name, recursive=True):
                    count += 1
                    size += item.size or 0
                obs.add("coreplane_s3_bucket_objects", count, bucket=bucket.name)
                obs.add("coreplane_s3_bucket_bytes", size, bucket=bucket.name)
        obs.message = f"{len(buckets)} bucket(s)"
        if self.canary.due():
            self._canary(obs, {b.name for b in buckets})
        return obs

    def _canary(self, obs: Observation, buckets: set[str]) -> None:
        if CANARY_BUCKET not in buckets:
            self.client.make_bucket(CANARY_BUCKET)
        key, body = f"canary-{uuid.uuid4().hex}", b"coreplane canary"
        for op, call in (
            (
                "put",
                lambda: self.client.put_object(CANARY_BUCKET, key, io.BytesIO(body), len(body)),
            ),
            ("get", lambda: self._read(key)),
            ("delete", lambda: self.client.remove_object(CANARY_BUCKET, key)),
        ):
            started = time.perf_counter()
            result = call()
            obs.add("coreplane_s3_canary_seconds", time.perf_counter() - started, op=op)
            if op == "get" and result != body:
                obs.status, obs.message = "critical", "canary object came back altered"
        if obs.status != "critical":
            obs.message += ", canary round trip ok"

    def _read(self, key: str) -> bytes:
        response = self.client.get_object(CANARY_BUCKET, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def close(self) -> None:
        pass
