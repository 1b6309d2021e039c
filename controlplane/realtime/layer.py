"""The Django Channels layer every websocket of `coreplane serve` shares (the console's
live pages and `/ws/rt`): in memory for one process by default, channels_redis when several
processes (and application processes publishing) should share groups."""

from __future__ import annotations

from typing import Any

# Messages one channel may hold before the layer drops new ones. channels_redis's default
# (100) is what loses group messages under a burst (channels_redis #62); a realtime
# process channel takes one message per publish, and a gap is read back from history.
CAPACITY = 10_000
LAYER_CONNECTIONS = 2_000  # Redis connections one process's layer may open at once
LAYER_READ_TIMEOUT_S = 30.0  # a Redis reply awaited this long at most (past the 5 s blocking pop)


def configure_django(channel_layer_url: str | None) -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    layer: dict[str, Any] = {
        "BACKEND": "channels.layers.InMemoryChannelLayer",
        "CONFIG": {"capacity": CAPACITY},
    }
    if channel_layer_url:
        # channels_redis's pool (redis-py's default) raises "Too many connections" past 100
        # sends in flight instead of waiting: 1,000 members joining a room at once (a
        # reconnect storm) each announce a join, and publishes failed with 503 meanwhile.
        # redis-py 8 reads with a 5 s socket timeout by default, the very length of
        # channels_redis's blocking BZPOPMIN (brpop_timeout = 5): every receive on a quiet
        # channel raised TimeoutError at 5 s (the hub then slept 1 s, delaying messages by up
        # to a second; a consumer of its own, like the bare one, died). Longer than the pop.
        host = {
            "address": channel_layer_url,
            "max_connections": LAYER_CONNECTIONS,
            "socket_timeout": LAYER_READ_TIMEOUT_S,
        }
        layer = {"BACKEND": "channels_redis.core.RedisChannelLayer",
                 "CONFIG": {"hosts": [host], "capacity": CAPACITY}}  # fmt: skip
    settings.configure(CHANNEL_LAYERS={"default": layer}, INSTALLED_APPS=[], USE_TZ=True)
    django.setup()
