"""Elasticsearch: cluster status, nodes, unassigned shards, per-index docs and size,
search and indexing rate and latency, JVM heap."""

from __future__ import annotations

from agents.collectors import Observation
from agents.collectors.base import Rates
from agents.config import TargetConfig
from agents.http import HttpClient

STATUS = {"green": 0, "yellow": 1, "red": 2}


class ElasticsearchCollector:
    def __init__(self, target: TargetConfig) -> None:
        opts = target.options
        auth = (opts["username"], opts.get("password", "")) if opts.get("username") else None
        self.http = HttpClient(target.address, timeout_s=target.timeout_s, auth=auth)
        self.rates = Rates()

    def _get(self, path: str, **params) -> dict:
        response = self.http.get(path, **params)
        response.raise_for_status()
        return response.json()

    def collect(self) -> Observation:
        obs = Observation()
        health = self._get("/_cluster/health")
        obs.add("coreplane_elasticsearch_cluster_status", STATUS.get(health["status"], 2))
        obs.add("coreplane_elasticsearch_nodes", health["number_of_nodes"])
        obs.add("coreplane_elasticsearch_unassigned_shards", health["unassigned_shards"])
        stats = self._get(
            "/_stats",
            level="indices",
            filter_path="_all.total.search,_all.total.indexing,indices.*.primaries.docs,indices.*.total.store",
        )
        for index, data in stats.get("indices", {}).items():
            obs.add(
                "coreplane_elasticsearch_index_docs",
                data["primaries"]["docs"]["count"],
                index=index,
            )
            obs.add(
                "coreplane_elasticsearch_index_size_bytes",
                data["total"]["store"]["size_in_bytes"],
                index=index,
            )
        total = stats.get("_all", {}).get("total", {})
        search, indexing = total.get("search", {}), total.get("indexing", {})
        queries = search.get("query_total")
        q_rate = self.rates.rate("query", queries)
        q_ms = self.rates.rate("query_ms", search.get("query_time_in_millis"))
        obs.add("coreplane_elasticsearch_search_per_second", q_rate)
        obs.add(
            "coreplane_elasticsearch_search_latency_seconds",
            q_ms / q_rate / 1000 if q_rate and q_ms is not None else None,
        )
        i_rate = self.rates.rate("index", indexing.get("index_total"))
        i_ms = self.rates.rate("index_ms", indexing.get("index_time_in_millis"))
        obs.add("coreplane_elasticsearch_indexing_per_second", i_rate)
        obs.add(
            "coreplane_elasticsearch_indexing_latency_seconds",
            i_ms / i_rate / 1000 if i_rate and i_ms is not None else None,
        )
        nodes = self._get("/_nodes/stats/jvm", filter_path="nodes.*.name,nodes.*.jvm.mem")
        for node in nodes.get("nodes", {}).values():
            mem = node["jvm"]["mem"]
            obs.add(
                "coreplane_elasticsearch_jvm_heap_used_bytes",
                mem["heap_used_in_bytes"],
                node=node["name"],
            )
            obs.add(
                "coreplane_elasticsearch_jvm_heap_max_bytes",
                mem["heap_max_in_bytes"],
                node=node["name"],
            )
        obs.status = {"green": "passing", "yellow": "warning"}.get(health["status"], "critical")
        obs.message = (
            f"cluster {health['status']}, {health['number_of_nodes']} node(s), "
            f"{health['unassigned_shards']} unassigned shard(s)"
        )
        return obs

    def close(self) -> None:
        self.http.close()
