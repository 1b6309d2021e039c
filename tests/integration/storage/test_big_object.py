"""A real `coreplane serve` streams a 1 GiB object up (with Content-Length) and back, and a
64 MiB one up chunked, without ever holding an object in memory: the server's RSS, sampled
every 0.2 s, stays within a bound far below the object's size. The bytes are generated on
the fly from seeds and compared by sha256 on both sides; a range read of the big object
gives exactly its bytes. A connection cut before its declared length stores nothing."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.serve import serving
from tests.support.storage import bucket_name, purge
from tests.support.timing import until

MIB = 1024 * 1024
GIB = 1024 * MIB
CHUNK = MIB
# Uploads go in 16 MiB parts (storage.part_size_mb), three in flight at once plus the one
# being read, so the server holds about 64-100 MiB of parts at its worst; uvicorn's own
# buffers and the download's 4 MiB chunks (objects.CHUNK) add little. 200 MiB over the idle
# server leaves room for the allocator's slack, and is a fifth of the 1 GiB that buffering
# would cost.
RSS_BOUND_MIB = 200
TIME_BOUND_S = 240  # the whole round trip, on a loaded 2-core machine


def chunk(seed: int, index: int) -> bytes:
    """The ``index``-th MiB of the object ``seed`` names: any part can be made again alone."""
    return random.Random(seed * 1_000_003 + index).randbytes(CHUNK)


def generated(seed: int, size: int, digest: hashlib._Hash) -> Iterator[bytes]:
    for index in range(size // CHUNK):
        data = chunk(seed, index)
        digest.update(data)
        yield data


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """The process's RSS every 0.2 s until stopped; the peak in MiB."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self._halt = pid, 0, threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak_kib = max(self.peak_kib, rss_kib(self.pid))
            self._halt.wait(0.2)

    def stop(self) -> float:
        self._halt.set()
        self.join()
        return self.peak_kib / 1024


@pytest.fixture(scope="module")
def server(services, tmp_path_factory):
    """A private `coreplane serve` (one process, server.workers=1, so its pid is the one
    whose RSS is measured) on its own SQLite store."""
    scratch = tmp_path_factory.mktemp("big")
    with serving(f"sqlite:///{scratch}/store.db", scratch / "serve.log", with_services=True, migrated=False,
                 log_level="warning", server__workers="1") as found:  # fmt: skip
        assert found.pid is not None
        yield found.url, {"Authorization": f"Bearer {found.token}"}, found.pid


@pytest.fixture
def bucket(server, raw):
    url, headers, _pid = server
    name = bucket_name("big")
    made = httpx.post(f"{url}/api/v1/storage/buckets", json={"name": name}, headers=headers)
    assert made.status_code == 201, made.text
    yield name
    purge(raw, name)


def _download(url: str, headers: dict, extra: dict | None = None) -> tuple[int, str, int]:
    digest, size = hashlib.sha256(), 0
    with httpx.stream("GET", url, headers={**headers, **(extra or {})}, timeout=120) as answer:
        assert answer.status_code in (200, 206), answer.read()
        for data in answer.iter_bytes(CHUNK):
            digest.update(data)
            size += len(data)
    return size, digest.hexdigest(), answer.status_code


def test_a_1_gib_object_streams_up_and_down_with_bounded_rss(server, bucket):
    url, headers, pid = server
    objects = f"{url}/api/v1/storage/{bucket}/objects"
    # Warm up (imports, pools, the first multipart upload) before the baseline.
    warm = httpx.put(f"{objects}/warm", content=os.urandom(20 * MIB), headers=headers, timeout=60)
    assert warm.status_code == 200, warm.text
    assert _download(f"{objects}/warm", headers)[0] == 20 * MIB
    baseline = rss_kib(pid) / 1024
    started = time.monotonic()

    sampler = Sampler(pid)
    sampler.start()
    sent = hashlib.sha256()
    t0 = time.monotonic()
    put = httpx.put(
        f"{objects}/big.bin",
        content=generated(1, GIB, sent),
        headers={**headers, "Content-Length": str(GIB), "Content-Type": "application/x-test"},
        timeout=120,
    )
    up_s = time.monotonic() - t0
    assert put.status_code == 200, put.text
    assert put.json()["size"] == GIB

    t0 = time.monotonic()
    size, got, _ = _download(f"{objects}/big.bin", headers)
    down_s = time.monotonic() - t0
    assert size == GIB and got == sent.hexdigest()

    # A range across a part boundary (16 MiB) of the big object: exactly its bytes.
    first, last = 16 * MIB - 1000, 16 * MIB + 5000
    expected = (chunk(1, 15) + chunk(1, 16))[CHUNK - 1000 : CHUNK + 5001]
    part = httpx.get(f"{objects}/big.bin", headers={**headers, "Range": f"bytes={first}-{last}"}, timeout=60)
    assert part.status_code == 206 and part.content == expected
    assert part.headers["content-range"] == f"bytes {first}-{last}/{GIB}"

    chunked_sent = hashlib.sha256()
    t0 = time.monotonic()
    chunked = httpx.put(
        f"{objects}/chunked.bin", content=generated(2, 64 * MIB, chunked_sent), headers=headers, timeout=120
    )
    chunked_s = time.monotonic() - t0
    assert chunked.status_code == 200, chunked.text
    assert _download(f"{objects}/chunked.bin", headers)[1] == chunked_sent.hexdigest()

    peak = sampler.stop()
    total_s = time.monotonic() - started
    print(
        f"\n1 GiB up {GIB / MIB / up_s:.0f} MB/s ({up_s:.1f} s), down {GIB / MIB / down_s:.0f} MB/s "
        f"({down_s:.1f} s); 64 MiB chunked up {64 / chunked_s:.0f} MB/s; server RSS baseline "
        f"{baseline:.0f} MiB, peak {peak:.0f} MiB (+{peak - baseline:.0f}, bound +{RSS_BOUND_MIB}); {total_s:.0f} s"
    )
    assert peak - baseline < RSS_BOUND_MIB, f"peak RSS {peak:.0f} MiB over a {baseline:.0f} MiB baseline"
    assert total_s < TIME_BOUND_S


def test_a_connection_cut_before_its_declared_length_stores_nothing(server, bucket, raw):
    url, headers, _pid = server
    split = urlsplit(url)
    declared, sent = 40 * MIB, 20 * MIB  # more than one 16 MiB part goes up before the cut
    head = (
        f"PUT /api/v1/storage/{bucket}/objects/cut.bin HTTP/1.1\r\nHost: {split.netloc}\r\n"
        f"Authorization: {headers['Authorization']}\r\nContent-Length: {declared}\r\n\r\n"
    ).encode()
    with socket.create_connection((split.hostname, split.port), timeout=60) as conn:
        conn.sendall(head)
        for index in range(sent // CHUNK):
            conn.sendall(chunk(3, index))
        conn.shutdown(socket.SHUT_WR)  # the client is gone mid-body
        conn.recv(65536)  # whatever the server says, if anything, before it closes

    def settled() -> bool:
        # The abort happens as the server notices the cut: poll until no part is left.
        return not raw._list_multipart_uploads(bucket).uploads

    until("the cut upload's parts to be aborted", settled, timeout_s=60)
    assert not list(raw.list_objects(bucket, recursive=True))
