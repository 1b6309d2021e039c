"""`make bench BENCH=storage` end to end on tiny sizes (a real `coreplane serve`, the real S3
server, the library and a restore drill against raw minio), so the benchmark keeps working
between its runs."""

from __future__ import annotations

from bench import storage
from bench.common import quantile


def test_the_storage_bench_measures_both_sides_of_each_figure(services, tmp_path):
    for part in ("serve", "small", "restore"):
        (tmp_path / part).mkdir()
    moved = storage.transfers(services, tmp_path / "serve", size_mb=6, parallel=2, rounds=2)
    for side in ("coreplane", "raw"):
        for way in ("upload", "download"):
            found = moved[side][way]
            assert found.bytes == 2 * 6 * storage.MIB and 0 < found.seconds < 120, (side, way, found)
    upload, download = storage.transfer_results(moved, size_mb=6, parallel=2)
    assert (upload.name, download.name) == ("storage_upload_mb_s", "storage_download_mb_s")
    assert upload.ratio == round(moved["coreplane"]["upload"].mb_s / moved["raw"]["upload"].mb_s, 3)
    assert upload.ours == round(moved["coreplane"]["upload"].mb_s, 1) and upload.unit == "MB/s"

    timings = storage.small_puts(services, tmp_path / "small", count=5)
    assert {side: len(ms) for side, ms in timings.items()} == {"coreplane": 5, "raw": 5}
    assert all(0 < ms < 10_000 for side in timings.values() for ms in side), timings
    small = storage.small_put_result(timings)
    assert small.name == "storage_small_put_p99_ms" and small.ours == round(
        quantile(timings["coreplane"], 99), 2
    )

    drill = storage.restore(services, tmp_path / "restore", mb=4, count=2)
    assert (
        drill.state == "passed" and drill.bytes == 4 * storage.MIB and drill.drill_s > 0 and drill.raw_s > 0
    )
    restore = storage.restore_result(drill)
    assert restore.name == "storage_restore_s_per_gb" and restore.met is None and restore.ratio > 0
