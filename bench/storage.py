"""Storage: coreplane's object storage against the raw `minio` SDK straight to the same S3
server (the harness's SeaweedFS), in the same run.

- storage_upload_mb_s, storage_download_mb_s: PARALLEL objects of SIZE_MB each at once,
  through a real `coreplane serve` (PUT and GET /api/v1/storage/{bucket}/objects/{key}, the
  body streamed from a generator with its Content-Length, the answer read in 1 MiB chunks,
  with urllib3 as minio uses) against minio's put_object/get_object with the same part size
  (storage.part_size_mb).
  MB/s = all the bytes over the wall time from the first request to the last answer; ROUNDS
  rounds, who goes first alternating, each side's best round counting. Goal: ratio >= 0.9
  and over 10 MB/s (the issue's seed NFR).
- storage_small_put_p99_ms: SMALL_COUNT 4 KB objects through the library in process
  (controlplane.storage.objects.upload with the bucket's row read once, as an application
  holds it: the checks, the quota against the row plus this process's pending usage, the
  timing and the usage note; the usage reaches the store on the storage loop's flush)
  against raw put_object, the two interleaved one by one so load from elsewhere falls on
  both alike. Goal: ratio <= 1.1.
- storage_restore_s_per_gb: a restore drill (controlplane.storage.drill.run) of a mirror
  holding RESTORE_MB in RESTORE_OBJECTS objects: the drill's RTO (the restore, before the
  comparison) per GB, against a raw loop that streams the same objects from the mirror into
  a fresh bucket (get_object as put_object's reader, in the drill's part size). Reported,
  no goal.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import urllib3
from minio import Minio
from sqlalchemy.orm import Session

from bench.common import quantile
from controlplane.settings import Settings
from controlplane.storage import buckets, drill, mirror, objects
from controlplane.storage.client import Storage
from controlplane.store.models import StorageBucket
from tests.support.results import Result
from tests.support.serve import private_serve
from tests.support.storage import bucket_name, purge, raw_client
from tests.support.stores import migrated_store

SIZE_MB = int(os.environ.get("BENCH_STORAGE_MB", 256))
PARALLEL = int(os.environ.get("BENCH_STORAGE_PARALLEL", 4))
ROUNDS = int(os.environ.get("BENCH_STORAGE_ROUNDS", 2))
SMALL_COUNT = int(os.environ.get("BENCH_STORAGE_SMALL", 500))
RESTORE_MB = int(os.environ.get("BENCH_STORAGE_RESTORE_MB", 256))
RESTORE_OBJECTS = int(os.environ.get("BENCH_STORAGE_RESTORE_OBJECTS", 8))
# The library's store for the small puts: each counts its bytes in the bucket's row and commits.
STORE = os.environ.get("BENCH_STORAGE_STORE", "postgresql")
MIB = 1024 * 1024
MB = 1_000_000
SMALL = 4096
CHUNK = MIB
PATTERN = bytes(range(256)) * (CHUNK // 256)  # one MiB, sent again and again
THROUGHPUT_GOAL, NFR_MB_S, SMALL_GOAL = 0.9, 10.0, 1.1


@dataclass
class Transfer:
    """PARALLEL objects moved at once: their bytes and the wall time."""

    bytes: int
    seconds: float

    @property
    def mb_s(self) -> float:
        return self.bytes / MB / self.seconds


def chunks(size: int) -> Iterator[bytes]:
    """``size`` bytes of PATTERN, a chunk at a time (nothing held but one chunk)."""
    left = size
    while left > 0:
        yield PATTERN[: min(left, CHUNK)]
        left -= CHUNK


class PatternReader:
    """A file-like of ``size`` bytes of PATTERN for minio's put_object."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        out = bytearray()
        while len(out) < n:
            out += PATTERN[: n - len(out)]
        self.left -= n
        return bytes(out)


def at_once(jobs: Sequence[Callable[[], int]]) -> Transfer:
    """Run ``jobs`` in parallel threads from one start; their bytes and the wall time. A
    job's failure is raised."""
    moved: list[int] = []
    failed: list[BaseException] = []
    start = threading.Barrier(len(jobs) + 1)

    def work(job: Callable[[], int]) -> None:
        start.wait()
        try:
            moved.append(job())
        except BaseException as exc:  # noqa: BLE001 - raised again below, in the caller
            failed.append(exc)

    threads = [threading.Thread(target=work, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    if failed:
        raise failed[0]
    return Transfer(sum(moved), seconds)


# --- large objects: through the API vs raw -------------------------------------------------


def _api_put(http: urllib3.PoolManager, url: str, headers: dict[str, str], size: int) -> int:
    sized = {**headers, "Content-Length": str(size), "Content-Type": "application/octet-stream"}
    answer = http.request("PUT", url, body=chunks(size), headers=sized, chunked=False)
    assert answer.status in (200, 201), answer.data[:500]
    return size


def _api_get(http: urllib3.PoolManager, url: str, headers: dict[str, str]) -> int:
    answer = http.request("GET", url, headers=headers, preload_content=False)
    try:
        assert answer.status == 200, answer.read()[:500]
        return sum(len(chunk) for chunk in answer.stream(CHUNK))
    finally:
        answer.release_conn()


def _raw_put(client: Minio, bucket: str, key: str, size: int, part: int) -> int:
    client.put_object(bucket, key, PatternReader(size), size, part_size=part)  # type: ignore[arg-type]
    return size


def _raw_get(client: Minio, bucket: str, key: str) -> int:
    answer = client.get_object(bucket, key)
    try:
        return sum(len(chunk) for chunk in answer.stream(CHUNK))
    finally:
        answer.close()
        answer.release_conn()


def transfers(settings: Settings, scratch: Path, *, size_mb: int = SIZE_MB, parallel: int = PARALLEL,
              rounds: int = ROUNDS) -> dict[str, dict[str, Transfer]]:  # fmt: skip
    """{"coreplane"|"raw": {"upload"|"download": Transfer}}: each side moves ``parallel``
    objects of ``size_mb`` MiB at once, up then down, in ``rounds`` rounds (who goes first
    alternating); each side's fastest round counts, as load from elsewhere only slows one."""
    size, part = size_mb * MIB, settings.storage.part_size_mb * MIB
    raw, raw_bucket, ours_bucket = raw_client(settings), bucket_name("bench-raw"), bucket_name("bench-api")
    found: dict[str, dict[str, Transfer]] = {"coreplane": {}, "raw": {}}
    with ExitStack() as stack:
        stack.callback(purge, raw, raw_bucket)
        stack.callback(purge, raw, ours_bucket)
        url, token, _log = stack.enter_context(private_serve(scratch, log_level="warning"))
        # The same HTTP client as minio's (urllib3): httpx alone reads at a third of its pace.
        http = urllib3.PoolManager(maxsize=parallel, timeout=urllib3.Timeout(connect=10, read=600))
        auth = {"Authorization": f"Bearer {token}"}
        made = http.request("POST", f"{url}/api/v1/storage/buckets", json={"name": ours_bucket}, headers=auth)
        assert made.status == 201, made.data
        raw.make_bucket(raw_bucket)
        for r in range(rounds):
            keys = [f"big/{r}/{i}" for i in range(parallel)]
            at = {k: f"{url}/api/v1/storage/{ours_bucket}/objects/{k}" for k in keys}
            sides = {
                "coreplane": ([partial(_api_put, http, at[k], auth, size) for k in keys],
                              [partial(_api_get, http, at[k], auth) for k in keys]),
                "raw": ([partial(_raw_put, raw, raw_bucket, k, size, part) for k in keys],
                        [partial(_raw_get, raw, raw_bucket, k) for k in keys]),
            }  # fmt: skip
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            for way, index in (("upload", 0), ("download", 1)):
                for side in order:
                    moved = at_once(sides[side][index])
                    assert moved.bytes == size * parallel, (side, way, moved, size * parallel)
                    best = found[side].get(way)
                    if best is None or moved.mb_s > best.mb_s:
                        found[side][way] = moved
    return found


def transfer_results(found: dict[str, dict[str, Transfer]], *, size_mb: int, parallel: int) -> list[Result]:
    out = []
    for way in ("upload", "download"):
        ours, raw = round(found["coreplane"][way].mb_s, 1), round(found["raw"][way].mb_s, 1)
        ratio = round(found["coreplane"][way].mb_s / found["raw"][way].mb_s, 3)
        goal = f"ratio >= {THROUGHPUT_GOAL} and > {NFR_MB_S:g} MB/s ({parallel} x {size_mb} MiB at once)"
        out.append(Result(f"storage_{way}_mb_s", ours, raw, "MB/s", goal,
                          ratio >= THROUGHPUT_GOAL and ours > NFR_MB_S, ratio=ratio))  # fmt: skip
    return out


# --- small objects: the library vs raw ---------------------------------------------------


def small_puts(
    settings: Settings, scratch: Path, *, count: int = SMALL_COUNT, store_dialect: str = STORE
) -> dict[str, list[float]]:
    """Milliseconds of each 4 KB put, {"coreplane": [...], "raw": [...]}, interleaved (who
    goes first alternating)."""
    raw, body = raw_client(settings), os.urandom(SMALL)
    storage = Storage.of(settings)
    ours_bucket, raw_bucket = bucket_name("bench-lib"), bucket_name("bench-raw")
    timings: dict[str, list[float]] = {"coreplane": [], "raw": []}
    with ExitStack() as stack:
        stack.callback(purge, raw, raw_bucket)
        stack.callback(purge, raw, ours_bucket)
        store = stack.enter_context(migrated_store(store_dialect, scratch, settings))
        with Session(store.engine) as session, session.begin():
            buckets.create(session, storage, ours_bucket, actor="bench", role="admin")
        raw.make_bucket(raw_bucket)

        with Session(store.engine) as session:
            row = session.get(StorageBucket, ours_bucket)
            assert row is not None
            session.expunge(row)  # held as an application holds its bucket: read once

        def ours(i: int) -> None:
            objects.upload(storage, row, f"small/{i}", io.BytesIO(body), length=SMALL)

        def bare(i: int) -> None:
            raw.put_object(raw_bucket, f"small/{i}", io.BytesIO(body), SMALL)

        sides = [("coreplane", ours), ("raw", bare)]
        for i in range(count):
            for side, put in sides if i % 2 == 0 else sides[::-1]:
                began = time.perf_counter()
                put(i)
                timings[side].append((time.perf_counter() - began) * 1000)
    return timings


def small_put_result(timings: dict[str, list[float]]) -> Result:
    ours, raw = quantile(timings["coreplane"], 99), quantile(timings["raw"], 99)
    ratio = round(ours / raw, 3)
    goal = f"ratio <= {SMALL_GOAL} ({len(timings['raw'])} x 4 KB each, interleaved)"
    return Result("storage_small_put_p99_ms", round(ours, 2), round(raw, 2), "ms", goal, ratio <= SMALL_GOAL,
                  ratio=ratio)  # fmt: skip


# --- restore drill vs a raw copy loop -----------------------------------------------------


@dataclass
class Restore:
    bytes: int
    drill_s: float  # the drill's RTO
    raw_s: float
    state: str


def _raw_copy(client: Minio, storage: Storage, source: str, target: str) -> int:
    """Every object of ``source`` streamed into ``target`` (get_object as the reader), in
    parts of the size the drill uses (objects.part_size: storage.part_size_mb)."""
    copied = 0
    for item in client.list_objects(source, recursive=True):
        key = item.object_name or ""
        answer = client.get_object(source, key)
        try:
            size = int(answer.headers.get("content-length", "0"))
            client.put_object(target, key, answer, size, part_size=objects.part_size(storage, size))  # type: ignore[arg-type]
        finally:
            answer.close()
            answer.release_conn()
        copied += size
    return copied


def restore(
    settings: Settings, scratch: Path, *, mb: int = RESTORE_MB, count: int = RESTORE_OBJECTS
) -> Restore:
    """A drill of a mirror holding ``mb`` MiB in ``count`` objects, and the raw copy loop."""
    raw, storage = raw_client(settings), Storage.of(settings)
    source, target, copy = bucket_name("bench-src"), bucket_name("bench-mir"), bucket_name("bench-cpy")
    size = mb * MIB // count
    with ExitStack() as stack:
        for name in (source, target, copy):
            stack.callback(purge, raw, name)
        store = stack.enter_context(migrated_store("sqlite", scratch, settings))
        with Session(store.engine) as session, session.begin():
            row = buckets.create(session, storage, source, actor="bench", role="admin")
            for i in range(count):
                raw.put_object(source, f"data/{i}", PatternReader(size), size)  # type: ignore[arg-type]
            found = mirror.create(session, storage, row, target_bucket=target, actor="bench")
            session.flush()
            mirror.run(session, storage, found, actor="bench")
            done = drill.run(session, storage, found, actor="bench", role="admin")
            state, drill_s, moved = done.state, done.rto_s, done.bytes
        assert state == "passed" and moved == size * count, (state, moved, done.error)
        raw.make_bucket(copy)
        began = time.perf_counter()
        copied = _raw_copy(raw, storage, target, copy)
        raw_s = time.perf_counter() - began
        assert copied == moved, (copied, moved)
    return Restore(moved, float(drill_s or 0.0), raw_s, state)


def restore_result(found: Restore) -> Result:
    gb = found.bytes / 1e9
    ours, raw = found.drill_s / gb, found.raw_s / gb
    return Result("storage_restore_s_per_gb", round(ours, 2), round(raw, 2), "s/GB",
                  f"report ({found.bytes / MIB:.0f} MiB, drill RTO vs a raw copy loop)", None,
                  ratio=round(ours / raw, 3))  # fmt: skip


def run(settings: Settings) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as scratch:
        root = Path(scratch)
        for part in ("serve", "small", "restore"):
            (root / part).mkdir()
        moved = transfers(settings, root / "serve")
        results = transfer_results(moved, size_mb=SIZE_MB, parallel=PARALLEL)
        results.append(small_put_result(small_puts(settings, root / "small")))
        results.append(restore_result(restore(settings, root / "restore")))
    return results
