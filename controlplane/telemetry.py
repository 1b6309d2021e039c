"""The control plane's own Prometheus metrics (names per Prometheus conventions)."""

from prometheus_client import Counter, Histogram

# Stored per agent heartbeat (infrastructure_metrics); the console lists agents by it.
HEARTBEAT_METRIC = "coreplane_agent_uptime_seconds"

INGEST_BATCHES = Counter(
    "coreplane_ingest_batches_total", "Ingest batches by outcome.", ["outcome"]
)  # accepted | duplicate | rejected
INGEST_POINTS = Counter("coreplane_ingest_points_total", "Items stored by ingest.", ["kind"])
INGEST_BYTES = Counter(
    "coreplane_ingest_received_bytes_total", "Request body bytes received by ingest (as sent)."
)
INGEST_REJECTS = Counter("coreplane_ingest_rejects_total", "Ingest batches refused, by reason.", ["reason"])
INGEST_DUPLICATES = Counter("coreplane_ingest_duplicates_total", "Batches whose batch_id was already stored.")
INGEST_SECONDS = Histogram(
    "coreplane_ingest_duration_seconds",
    "Time to handle one ingest request, body read to commit.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
