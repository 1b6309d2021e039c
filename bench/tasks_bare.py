"""Bare Celery with its default settings, the tasks bench's baseline: a plain
``Celery(broker, backend)`` app that `celery -A bench.tasks_bare worker` runs (BENCH_BROKER
and BENCH_BACKEND in its environment), with the same task code as coreplane's side."""

from __future__ import annotations

import os

from celery import Celery

app = Celery(
    "bare",
    broker=os.environ["BENCH_BROKER"],
    backend=os.environ["BENCH_BACKEND"],
    include=["bench.tasks_jobs"],
)
