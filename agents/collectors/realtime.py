"""A `coreplane serve`'s realtime figures (controlplane/realtime/metrics.py), read from its
/metrics in Prometheus' text format: connections, rooms and presence as they are now; per
second rates of connections opened and closed, room messages in and out (in total and per
room kind) and frames dropped and refused; the delivery latency's p50/p95/p99 and the mean
fan-out over the time since the previous scrape.

Rates and quantiles come from the difference between two scrapes, so the first scrape and
the first after the serve restarted (its counters went back to zero) report none of them.
The target is one serve process: a process's counters mean nothing added to another's."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from agents.collectors import Observation
from agents.config import TargetConfig
from agents.http import HttpClient

PREFIX = "coreplane_rt_"
MAX_KINDS = 50  # room kinds reported one by one: a series per kind and figure costs the store
MAX_BODY_BYTES = 4 * 1024 * 1024  # a serve's /metrics is tens of kB; more is not a serve
RATES = (  # (counter, summed over its labels; the figure reported per second)
    ("coreplane_rt_connections_opened_total", "coreplane_rt_connections_opened_per_second"),
    ("coreplane_rt_connections_closed_total", "coreplane_rt_connections_closed_per_second"),
    ("coreplane_rt_messages_in_total", "coreplane_rt_messages_in_per_second"),
    ("coreplane_rt_messages_out_total", "coreplane_rt_messages_out_per_second"),
    ("coreplane_rt_frames_dropped_total", "coreplane_rt_frames_dropped_per_second"),
    ("coreplane_rt_frames_refused_total", "coreplane_rt_frames_refused_per_second"),
)
COUNTER_SUFFIXES = ("_total", "_count", "_sum")
PER_KIND = (
    ("coreplane_rt_messages_in_total", "coreplane_rt_messages_in_per_second"),
    ("coreplane_rt_messages_out_total", "coreplane_rt_messages_out_per_second"),
)
QUANTILES = ((0.5, "coreplane_rt_delivery_p50_seconds"), (0.95, "coreplane_rt_delivery_p95_seconds"),
             (0.99, "coreplane_rt_delivery_p99_seconds"))  # fmt: skip


@dataclass
class Scrape:
    """One reading of the serve's realtime figures, each summed over its labels except the
    room kind (``per_kind``) and the histogram bucket (``delivery``: upper bound -> count)."""

    at: float
    started: float | None = None  # the serve's process_start_time_seconds
    totals: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    per_kind: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    delivery: dict[float, float] = field(default_factory=lambda: defaultdict(float))


def parse(text: str, at: float) -> Scrape:
    """The realtime samples of an exposition; other families are skipped."""
    scrape = Scrape(at)
    for family in text_string_to_metric_families(text):
        if family.name == "process_start_time_seconds" and family.samples:
            scrape.started = family.samples[0].value
        if not family.name.startswith(PREFIX):
            continue
        for sample in family.samples:
            if sample.name == "coreplane_rt_delivery_seconds_bucket":
                scrape.delivery[float(sample.labels["le"])] += sample.value
                continue
            if sample.name.endswith("_created"):  # when a series began: no figure
                continue
            scrape.totals[sample.name] += sample.value
            if "kind" in sample.labels:
                scrape.per_kind[sample.name][sample.labels["kind"]] = sample.value
    return scrape


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of cumulative ``buckets`` ((upper bound, count), ascending, the last
    +Inf), interpolated linearly inside its bucket as Prometheus's histogram_quantile does;
    None when the buckets hold nothing."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    below, lower = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):  # beyond the largest finite bound: that bound is all we know
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        below, lower = count, upper
    return lower


def _restarted(before: Scrape, now: Scrape) -> bool:
    """The serve restarted between the scrapes: its start time moved or a counter went back
    (the start time alone is not enough: it is absent where the process collector is)."""
    if before.started is not None and now.started is not None and now.started != before.started:
        return True
    return any(
        now.totals.get(name, 0.0) < value
        for name, value in before.totals.items()
        if name.endswith(COUNTER_SUFFIXES)  # gauges go down as they please
    )


class RealtimeCollector:
    def __init__(self, target: TargetConfig) -> None:
        self.http = HttpClient(target.address, timeout_s=target.timeout_s)
        self.previous: Scrape | None = None

    def collect(self) -> Observation:
        answer = self.http.get("/metrics")
        answer.raise_for_status()
        # Checked before parsing: the parser's time and memory grow with the text.
        if len(answer.content) > MAX_BODY_BYTES:
            raise ValueError(f"/metrics answered {len(answer.content)} bytes, over {MAX_BODY_BYTES}")
        now = parse(answer.text, time.monotonic())
        if "coreplane_rt_connections" not in now.totals:
            raise ValueError("/metrics has no coreplane_rt_connections: not a coreplane serve")
        obs = Observation()
        obs.add("coreplane_rt_connections", now.totals["coreplane_rt_connections"])
        obs.add("coreplane_rt_rooms", now.totals.get("coreplane_rt_rooms", 0.0))
        obs.add("coreplane_rt_presence", now.totals.get("coreplane_rt_presence", 0.0))
        before, self.previous = self.previous, now
        kinds = sorted(now.per_kind.get("coreplane_rt_messages_out_total", {}))
        obs.message = f"{now.totals['coreplane_rt_connections']:.0f} connection(s), {len(kinds)} room kind(s)"
        if before is None or now.at <= before.at or _restarted(before, now):
            return obs  # nothing to take a difference from
        self._rates(obs, before, now)
        self._delivery(obs, before, now)
        if len(kinds) > MAX_KINDS:
            obs.message += f", capped: the first {MAX_KINDS} by name reported"
        return obs

    def _rates(self, obs: Observation, before: Scrape, now: Scrape) -> None:
        elapsed = now.at - before.at
        for counter, figure in RATES:
            obs.add(figure, (now.totals.get(counter, 0.0) - before.totals.get(counter, 0.0)) / elapsed)
        for counter, figure in PER_KIND:
            kinds = now.per_kind.get(counter, {})
            old = before.per_kind.get(counter, {})
            # A kind first seen since the last scrape counted from zero in this same process.
            for kind in sorted(kinds)[:MAX_KINDS]:
                obs.add(figure, (kinds[kind] - old.get(kind, 0.0)) / elapsed, kind=kind)

    def _delivery(self, obs: Observation, before: Scrape, now: Scrape) -> None:
        buckets = [(le, now.delivery[le] - before.delivery.get(le, 0.0)) for le in sorted(now.delivery)]
        for q, figure in QUANTILES:
            obs.add(figure, quantile(q, buckets))
        sums = now.totals.get("coreplane_rt_fanout_members_sum", 0.0) - before.totals.get(
            "coreplane_rt_fanout_members_sum", 0.0
        )
        count = now.totals.get("coreplane_rt_fanout_members_count", 0.0) - before.totals.get(
            "coreplane_rt_fanout_members_count", 0.0
        )
        obs.add("coreplane_rt_fanout_mean", sums / count if count > 0 else None)

    def close(self) -> None:
        self.http.close()
