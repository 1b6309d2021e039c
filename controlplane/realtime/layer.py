"""The Django Channels layer every websocket of `coreplane serve` shares (the console's
live pages and `/ws/rt`): in memory for one process by default, channels_redis when several
processes (and application processes publishing) should share groups."""

from __future__ import annotations

from typing import Any

# Messages one channel may hold before the layer drops new ones. channels_redis's default
# (100) is what loses group messages under a burst (channels_redis #62); a realtime
# process channel takes one message per publish, and a gap is read back from history.
CAPACITY = 10_000


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
        layer = {"BACKEND": "channels_redis.core.RedisChannelLayer",
                 "CONFIG": {"hosts": [channel_layer_url], "capacity": CAPACITY}}  # fmt: skip
    settings.configure(CHANNEL_LAYERS={"default": layer}, INSTALLED_APPS=[], USE_TZ=True)
    django.setup()
