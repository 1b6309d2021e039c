"""Task runs with known runtimes and waits, for the analytics tests on both dialects."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from controlplane.store.models import TaskRun


def seed_runs(session: Session, since: datetime) -> None:
    """In [since, since + 1 h): 100 jobs.add on queue celery (runtime i/100 s, wait i/10 s
    for i = 1..100; the first 10 failed, the first 20 retried), 3 jobs.slow on queue slow
    (runtime 20, 30, 40 s, no wait); one jobs.out finished the hour before."""
    for i in range(1, 101):
        finished = since + timedelta(seconds=i * 35)
        session.add(
            TaskRun(
                task_id=f"add-{i}", name="jobs.add", queue="celery", state="FAILURE" if i <= 10 else "SUCCESS",
                retries=1 if i <= 20 else 0, runtime_s=i / 100, wait_s=i / 10, finished_at=finished,
                updated_at=finished,
            )
        )  # fmt: skip
    for i, runtime in enumerate((20.0, 30.0, 40.0)):
        finished = since + timedelta(minutes=10 + i)
        session.add(
            TaskRun(task_id=f"slow-{i}", name="jobs.slow", queue="slow", state="SUCCESS", retries=0,
                    runtime_s=runtime, finished_at=finished, updated_at=finished)
        )  # fmt: skip
    before = since - timedelta(minutes=5)
    session.add(TaskRun(task_id="out", name="jobs.out", queue="celery", state="SUCCESS", retries=0,
                        runtime_s=1.0, finished_at=before, updated_at=before))  # fmt: skip
