"""Each bucket's usage moved by this app's writes since they last went into the store
(``Storage.usage``, one ``Usage`` per app).

A write notes its bytes and objects here instead of updating the bucket's row in the
write's own transaction: that UPDATE and its commit cost more than a small S3 put itself
(4 KB puts: 5 ms on the server, 8 ms more in the store). The storage loop of every process
adds what is pending into the rows every ``storage.loop_interval_s`` (``flush``), and a
quota check counts this process's pending bytes on top of the row, so one process never
overshoots a quota by more than its own in-flight write. Other processes' writes reach the
row within one interval: across N processes a quota can be passed by what the others wrote
in that interval. The leader's full count (controlplane/storage/analytics.py) sets the row
from what the server holds and drops what the leader itself had pending for that bucket
(``settle``: the count listed those writes already), so the estimate is corrected every few
minutes either way; a write landing behind the listing is missed until the next count."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import case, update
from sqlalchemy.orm import Session

from controlplane.store.models import StorageBucket


class Usage:
    """One app's ledger (held by its ``Storage``): every app in a process keeps its own, so
    one app's flush never takes another's writes into the wrong store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, list[int]] = {}  # bucket -> [bytes, objects]

    def note(self, bucket: str, delta_bytes: int, delta_objects: int) -> None:
        """A write moved ``bucket``'s usage by these amounts (negative for a delete)."""
        with self._lock:
            moved = self._pending.setdefault(bucket, [0, 0])
            moved[0] += delta_bytes
            moved[1] += delta_objects

    def pending_bytes(self, bucket: str) -> int:
        with self._lock:
            return self._pending.get(bucket, [0, 0])[0]

    def flush(self, session: Session) -> Callable[[], None]:
        """What is pending added into the buckets' rows (in SQL, so processes add up); returns
        the call that forgets it, for after the commit (a failed commit keeps it for next time)."""
        with self._lock:
            taken = {bucket: tuple(moved) for bucket, moved in self._pending.items() if moved != [0, 0]}
        for bucket, (delta_bytes, delta_objects) in taken.items():
            used = StorageBucket.used_bytes + delta_bytes
            count = StorageBucket.objects + delta_objects
            session.execute(
                update(StorageBucket)
                .where(StorageBucket.name == bucket)
                .values(used_bytes=case((used < 0, 0), else_=used), objects=case((count < 0, 0), else_=count))
                .execution_options(synchronize_session=False)
            )

        def forget() -> None:
            with self._lock:
                for bucket, (delta_bytes, delta_objects) in taken.items():
                    moved = self._pending.get(bucket)
                    if moved is not None:  # what was noted since the flush began stays
                        moved[0] -= delta_bytes
                        moved[1] -= delta_objects

        return forget

    def settle(self, bucket: str) -> None:
        """A full count of ``bucket`` replaced its usage: what was pending is in it."""
        with self._lock:
            self._pending.pop(bucket, None)
