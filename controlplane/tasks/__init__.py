"""Background tasks on Celery: the app factory applications import, its task base class
(retries with backoff and jitter, time limits, dead-lettering) and its queues.

Importing this package touches neither the store nor a broker: agents and workers import
it with a small install. The control plane's use cases (history, workflows, schedules,
analytics) live in its submodules and import the store themselves.
"""

from controlplane.tasks.app import make_celery
from controlplane.tasks.base import CoreplaneTask

__all__ = ["CoreplaneTask", "make_celery"]
