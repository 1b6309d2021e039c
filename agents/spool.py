"""A durable, bounded, ordered on-disk queue of batches.

Every batch is written here before it is sent and removed once the control plane has
it, so a crash or an outage loses nothing. Files are ``<seq>-<batch_id>.json.gz``,
written to a temporary name, fsynced and renamed, so a reader never sees half a file.
Past ``max_bytes`` the oldest batches are dropped and counted.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

SUFFIX = ".json.gz"


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.dropped = 0  # batches dropped past the bound since the last report
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        files = self._files()
        self._seq = int(files[-1].name.split("-", 1)[0]) + 1 if files else 0
        for tmp in directory.glob("*.tmp"):
            tmp.unlink()  # a write interrupted by a crash

    def _files(self) -> list[Path]:
        return sorted(self.directory.glob(f"*{SUFFIX}"))

    def append(self, batch: dict) -> Path:
        with self._lock:
            path = self.directory / f"{self._seq:012d}-{batch['batch_id']}{SUFFIX}"
            self._seq += 1
            _write(path, batch)
            self._enforce_bound()
        return path

    def replace(self, path: Path, batch: dict) -> Path:
        """Put ``batch`` (a new id) in the place of the spooled ``path``: same sequence
        number, so it is sent where the original was. The new file is durable before the
        old one goes; after a crash in between both are there, the new one first."""
        seq = path.name.split("-", 1)[0]
        new = self.directory / f"{seq}-{batch['batch_id']}{SUFFIX}"
        with self._lock:
            _write(new, batch)
            path.unlink(missing_ok=True)
        return new

    def _enforce_bound(self) -> None:
        files = self._files()
        sizes = {f: f.stat().st_size for f in files}
        total = sum(sizes.values())
        for f in files[:-1]:  # never drop the batch just written
            if total <= self.max_bytes:
                break
            total -= sizes[f]
            f.unlink(missing_ok=True)
            self.dropped += 1

    def pending(self) -> Iterator[tuple[Path, bytes]]:
        """Spooled batches, oldest first, as (path, gzip body ready to send)."""
        for path in self._files():
            try:
                yield path, path.read_bytes()
            except FileNotFoundError:
                continue  # dropped by the bound meanwhile

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def depth(self) -> tuple[int, int]:
        """(batches, bytes) waiting."""
        files = self._files()
        return len(files), sum(f.stat().st_size for f in files if f.exists())

    def dead_letter(self, path: Path, reason: str) -> None:
        """Move a batch the control plane refused (4xx) aside, with the reason."""
        dead = self.directory.parent / "dead-letter"
        dead.mkdir(exist_ok=True)
        os.replace(path, dead / path.name)
        with open(dead / "reasons.log", "a") as log:
            log.write(f"{path.name}\t{reason}\n")


def _write(path: Path, batch: dict) -> None:
    """Write to a temporary name, fsync, rename: a reader never sees half a batch."""
    data = gzip.compress(json.dumps(batch, separators=(",", ":")).encode(), compresslevel=1)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
