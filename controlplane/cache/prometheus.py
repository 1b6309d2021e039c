"""The cache's figures on an application's Prometheus /metrics (prometheus-client):

from prometheus_client import REGISTRY
REGISTRY.register(CacheMetrics(cache))
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from controlplane.cache.core import Cache

COUNTERS = {
    "hits": "Reads a layer answered",
    "misses": "Reads a layer did not answer",
    "errors": "Layer failures (the layer is skipped a moment)",
    "busy": "Calls that went without a layer: its client's pool had no connection free",
    "read_seconds": "Time spent reading",
}


class CacheMetrics(Collector):
    """Read at scrape time, so the figures are the cache's own, never stale."""

    def __init__(self, *caches: Cache) -> None:
        self.caches = caches

    def collect(self) -> Iterator:
        counters = {
            name: CounterMetricFamily(f"coreplane_cache_{name}", text, labels=["namespace", "layer"])
            for name, text in COUNTERS.items()
        }
        entries = GaugeMetricFamily(
            "coreplane_cache_entries", "Entries in the in-process layer", labels=["namespace"]
        )
        size = GaugeMetricFamily(
            "coreplane_cache_bytes", "Bytes in the in-process layer", labels=["namespace"]
        )
        evictions = CounterMetricFamily(
            "coreplane_cache_evictions", "In-process LRU evictions", labels=["namespace"]
        )
        for cache in self.caches:
            stats = cache.stats()
            for layer, figures in stats["layers"].items():
                for name, family in counters.items():
                    if figures.get(name) is not None:
                        family.add_metric([cache.namespace, layer], figures[name])
            memory = stats["layers"].get("memory", {})
            if "entries" in memory:
                entries.add_metric([cache.namespace], memory["entries"])
                size.add_metric([cache.namespace], memory["bytes"])
                evictions.add_metric([cache.namespace], memory["evictions"])
        yield from counters.values()
        yield from (entries, size, evictions)
