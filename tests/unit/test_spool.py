"""The spool on a real filesystem: order, bound, crash leftovers, dead letters."""

import gzip
import json

from agents.spool import Spool


def _batch(n: int) -> dict:
    return {"batch_id": f"b{n}", "agent": "a", "metrics": [{"v": "x" * 200}] * 5, "events": []}


def test_batches_come_back_oldest_first_across_restarts(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    for n in range(3):
        spool.append(_batch(n))
    reopened = Spool(tmp_path, max_bytes=10**6)  # a restarted agent
    reopened.append(_batch(3))
    ids = [json.loads(gzip.decompress(body))["batch_id"] for _, body in reopened.pending()]
    assert ids == ["b0", "b1", "b2", "b3"]


def test_past_the_bound_the_oldest_are_dropped_and_counted(tmp_path):
    one = len(gzip.compress(json.dumps(_batch(0)).encode(), compresslevel=1))
    spool = Spool(tmp_path, max_bytes=one * 3 + 10)
    for n in range(6):
        spool.append(_batch(n))
    ids = [json.loads(gzip.decompress(body))["batch_id"] for _, body in spool.pending()]
    assert ids == ["b3", "b4", "b5"]
    assert spool.dropped == 3
    assert spool.depth()[0] == 3


def test_a_half_written_file_from_a_crash_is_discarded(tmp_path):
    (tmp_path / "000000000007-b7.json.tmp").write_bytes(b"\x1f\x8b partial")
    spool = Spool(tmp_path, max_bytes=10**6)
    assert list(spool.pending()) == []
    assert not list(tmp_path.glob("*.tmp"))


def test_dead_letters_keep_the_batch_and_the_reason(tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=10**6)
    path = spool.append(_batch(1))
    spool.dead_letter(path, "422: metrics.0.value: Input should be a finite number")
    assert spool.depth() == (0, 0)
    dead = tmp_path / "dead-letter"
    assert (dead / path.name).exists()
    assert "finite number" in (dead / "reasons.log").read_text()
