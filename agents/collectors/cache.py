"""coreplane's cache, as its processes report it into Redis: per namespace and layer,
hits, misses, errors and hit ratio; in-process entries, bytes and evictions."""

from __future__ import annotations

import json
from collections import defaultdict

import redis

from agents.collectors import Observation
from agents.config import TargetConfig
from controlplane.cache.core import STATS_KEY

SUMMED = ("hits", "misses", "errors", "busy", "read_seconds", "entries", "bytes", "evictions")


class CacheCollector:
    def __init__(self, target: TargetConfig) -> None:
        self.client = redis.Redis.from_url(
            target.address, socket_timeout=target.timeout_s, socket_connect_timeout=target.timeout_s
        )

    def collect(self) -> Observation:
        keys = list(self.client.scan_iter(match=f"{STATS_KEY}*", count=500))
        reports = [json.loads(v) for v in self.client.mget(keys) if v] if keys else []
        totals: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        processes: dict[str, int] = defaultdict(int)
        for report in reports:
            processes[report["namespace"]] += 1
            for layer, figures in report["layers"].items():
                for name in SUMMED:
                    if figures.get(name) is not None:
                        totals[(report["namespace"], layer)][name] += figures[name]
        obs = Observation()
        for namespace, count in processes.items():
            obs.add("coreplane_cache_processes", count, namespace=namespace)
        for (namespace, layer), figures in totals.items():
            tags = {"namespace": namespace, "layer": layer}
            for name, value in figures.items():
                metric = {"hits": "hits_total", "misses": "misses_total", "errors": "errors_total",
                          "busy": "busy_total", "read_seconds": "read_seconds_total",
                          "evictions": "evictions_total", "entries": "entries",
                          "bytes": "bytes"}[name]  # fmt: skip
                obs.add(f"coreplane_cache_{metric}", value, **tags)
            seen = figures.get("hits", 0) + figures.get("misses", 0)
            if seen:
                obs.add("coreplane_cache_hit_ratio", figures.get("hits", 0) / seen, **tags)
        obs.message = f"{len(reports)} cache process(es) in {len(processes)} namespace(s)"
        return obs

    def close(self) -> None:
        self.client.close()
