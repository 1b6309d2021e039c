"""The baseline the realtime tests and benchmark compare coreplane with: a bare Django
Channels consumer doing what the Channels docs show, on the same channels_redis layer.

Each connection joins the layer group of its room (``?room=``) with its own channel; a text
frame from a client is ``channel_layer.group_send`` to that group as is, and every member's
consumer sends it on. Run it with ``uvicorn tests.support.realtime_bare:app`` and
``BARE_LAYER_URL=redis://...`` (in memory when unset).
"""

from __future__ import annotations

import hashlib
import os
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer

from controlplane.realtime.layer import configure_django

configure_django(os.environ.get("BARE_LAYER_URL"))


class BareRoom(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        room = (query.get("room") or ["bench"])[-1]
        self.group = "bare." + hashlib.sha1(room.encode(), usedforsecurity=False).hexdigest()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.channel_layer.group_send(self.group, {"type": "room.message", "text": text_data})

    async def room_message(self, message: dict) -> None:
        await self.send(text_data=message["text"])


app = BareRoom.as_asgi()
