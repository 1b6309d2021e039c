"""Helpers more than one benchmark uses."""

from __future__ import annotations

import statistics


def quantile(values: list[float], q: int) -> float:
    """The ``q``-th percentile of ``values`` (one value: itself)."""
    # inclusive: a quantile of a few samples stays within them (p99 never above the max)
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]
