"""The realtime figures each `coreplane serve` process serves on /metrics. Rooms are
labelled by kind (``chat:42`` → ``chat:*``), at most ``MAX_KINDS`` of them, the rest
``other``: a label per room would grow without bound."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from controlplane.labels import CappedLabels

MAX_KINDS = 100
_kinds = CappedLabels(MAX_KINDS)

CONNECTIONS = Gauge("coreplane_rt_connections", "Open /ws/rt connections in this process.")
OPENED = Counter("coreplane_rt_connections_opened_total", "/ws/rt connections accepted.")
CLOSED = Counter(
    "coreplane_rt_connections_closed_total",
    "/ws/rt connections ended, by reason (client, idle, too_slow, abuse, restart, refused).",
    ["reason"],
)
MESSAGES_IN = Counter("coreplane_rt_messages_in_total", "Room messages published, by room kind.", ["kind"])
MESSAGES_OUT = Counter(
    "coreplane_rt_messages_out_total", "Room message frames queued to clients, by room kind.", ["kind"]
)
FANOUT = Histogram(
    "coreplane_rt_fanout_members",
    "Members of this process one room message went to.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
DELIVERY = Histogram(
    "coreplane_rt_delivery_seconds",
    "From publish to the frame handed to the client's socket.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
DROPPED = Counter(
    "coreplane_rt_frames_dropped_total", "Frames for clients not delivered, by reason (too_slow).", ["reason"]
)
REFUSED = Counter("coreplane_rt_frames_refused_total", "Client frames refused, by error code.", ["code"])
PRESENCE = Gauge("coreplane_rt_presence", "Room memberships this process holds, by room kind.", ["kind"])
ROOMS = Gauge("coreplane_rt_rooms", "Rooms with a member in this process.")
GAP_FILLS = Counter(
    "coreplane_rt_gap_fills_total",
    "Room messages this process read back from history because the channel layer lost or reordered them.",
)


def kind(room: str) -> str:
    return _kinds(room.split(":", 1)[0] + ":*" if ":" in room else room)
