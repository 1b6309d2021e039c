"""S3 object server through the minio SDK: health, buckets, objects and bytes per
bucket, and PUT/GET/DELETE latency of a small canary object."""

from __future__ import annotations

import io
import time
import uuid

from minio import Minio

from agents.collectors import Observation
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
        # Listing every object is heavy: count buckets' contents every Nth probe only.
        self.count_every = int(opts.get("count_every", 30))
        self.probes = 0

    def collect(self) -> Observation:
        obs = Observation()
        buckets = self.client.list_buckets()
        obs.add("coreplane_s3_up", 1)
        obs.add("coreplane_s3_buckets", len(buckets))
        self.probes += 1
        if self.count_every and (self.probes - 1) % self.count_every == 0:
            for bucket in buckets:
                count = size = 0
                for item in self.client.list_objects(bucket.name, recursive=True):
                    count += 1
                    size += item.size or 0
                obs.add("coreplane_s3_bucket_objects", count, bucket=bucket.name)
                obs.add("coreplane_s3_bucket_bytes", size, bucket=bucket.name)
        if CANARY_BUCKET not in {b.name for b in buckets}:
            self.client.make_bucket(CANARY_BUCKET)
        key, body = f"canary-{uuid.uuid4().hex}", b"coreplane canary"
        for op, call in (
            (
                "put",
                lambda: self.client.put_object(CANARY_BUCKET, key, io.BytesIO(body), len(body)),
            ),
            ("get", lambda: self.client.get_object(CANARY_BUCKET, key).read()),
            ("delete", lambda: self.client.remove_object(CANARY_BUCKET, key)),
        ):
            started = time.perf_counter()
            result = call()
            obs.add("coreplane_s3_canary_seconds", time.perf_counter() - started, op=op)
            if op == "get" and result != body:
                obs.status, obs.message = "critical", "canary object came back altered"
        obs.message = obs.message or f"{len(buckets)} bucket(s), canary round trip ok"
        return obs

    def close(self) -> None:
        pass
