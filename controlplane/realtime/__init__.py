"""Realtime websockets for applications, on Django Channels (docs/realtime.md).

Clients connect to `/ws/rt` (connection.py) with a token from ``POST
/api/v1/realtime/tokens`` (tokens.py); rooms keep a sequence, history and presence
(rooms.py); each `coreplane serve` process fans room messages out to its connections
through one hub (hub.py). Application code publishes with::

    from controlplane import realtime
    seq = realtime.publish("chat:42", {"text": "hello"})          # sync code
    seq = await realtime.apublish("chat:42", {"text": "hello"})   # async code

which needs the same Redis (``COREPLANE_SERVER__CHANNEL_LAYER_URL``, and
``COREPLANE_REALTIME__REDIS_URL`` when history and presence live elsewhere) as the servers.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync

from controlplane.realtime.runtime import Realtime

_runtime: Realtime | None = None


def runtime() -> Realtime:
    """This process's publishing side, from its settings (once)."""
    global _runtime
    if _runtime is None:
        from controlplane.realtime.layer import configure_django
        from controlplane.settings import load_settings

        settings = load_settings()
        configure_django(settings.server.channel_layer_url)
        _runtime = Realtime.of(settings)
    return _runtime


async def apublish(room: str, data: Any, *, sender: str | None = None) -> int:
    """Check, store and broadcast ``data`` to ``room``; its sequence in the room."""
    return await runtime().publish(room, data, sender=sender)


def publish(room: str, data: Any, *, sender: str | None = None) -> int:
    """``apublish`` for synchronous code (not from inside a running event loop)."""
    return async_to_sync(apublish)(room, data, sender=sender)


__all__ = ["Realtime", "apublish", "publish", "runtime"]
