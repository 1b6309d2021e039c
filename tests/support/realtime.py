"""Realtime test support: a `coreplane serve` on the Redis channel layer, tokens, and a
websocket client that reads frames by type."""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import websockets

from tests.support.serve import ControlPlane, serving
from tests.support.services import require, services_settings


def redis_url() -> str:
    url = services_settings().redis.url
    require(url, "redis")
    assert url is not None
    return url


@contextmanager
def rt_serve(
    database_url: str | None = None, *, redis: bool = True, **settings: str
) -> Iterator[ControlPlane]:
    """A `coreplane serve` whose channel layer, history and presence are on the real Redis
    (``redis=False``: in memory, the embedded default), with ``settings`` as COREPLANE_*
    variables (``realtime__heartbeat_s="1"``). Servers given the same ``database_url`` share
    the session secret, so one's tokens open the other's sockets."""
    scratch = Path(tempfile.mkdtemp(prefix="coreplane-rt-"))
    store = database_url or f"sqlite:///{scratch}/store.db"
    layer = {"server__channel_layer_url": redis_url()} if redis else {}
    with serving(store, scratch / "serve.log", migrated=database_url is not None, **layer, **settings) as cp:
        yield cp


def room(prefix: str = "test") -> str:
    """A room name no other test (nor an earlier run on the same Redis) used."""
    return f"{prefix}:{uuid.uuid4().hex[:12]}"


def mint(cp: ControlPlane, user: str, join: list[str], publish: list[str] | None = None, **extra: Any) -> str:
    """A realtime token from ``POST /api/v1/realtime/tokens``."""
    body = {"user": user, "join": join, "publish": publish if publish is not None else join, **extra}
    answer = httpx.post(
        f"{cp.url}/api/v1/realtime/tokens",
        json=body,
        headers={"Authorization": f"Bearer {cp.token}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


def ws_url(cp: ControlPlane, token: str | None = None) -> str:
    base = cp.url.replace("http://", "ws://") + "/ws/rt"
    return f"{base}?token={token}" if token else base


class Client:
    """One `/ws/rt` connection; frames read but not yet asked for wait in ``inbox``."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.inbox: list[dict] = []
        self._ids = 0

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> Client:
        return cls(await websockets.connect(url, max_size=None, **kwargs))

    async def send(self, kind: str, room: str | None = None, **fields: Any) -> int:
        """Send a frame; its id."""
        self._ids += 1
        frame = {"type": kind, "id": self._ids, **fields}
        if room is not None:
            frame["room"] = room
        await self.ws.send(json.dumps(frame))
        return self._ids

    async def next(self, timeout: float = 10.0) -> dict:
        if self.inbox:
            return self.inbox.pop(0)
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def expect(self, kind: str, timeout: float = 10.0, **match: Any) -> dict:
        """The first frame of ``kind`` (matching ``match``); others read meanwhile stay queued."""
        for i, frame in enumerate(self.inbox):
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items()):
                return self.inbox.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - loop.time())))
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items()):
                return frame
            self.inbox.append(frame)

    async def call(self, kind: str, room: str | None = None, timeout: float = 10.0, **fields: Any) -> dict:
        """Send a frame and return the reply or error carrying its id."""
        frame_id = await self.send(kind, room, **fields)
        for i, frame in enumerate(self.inbox):
            if frame.get("id") == frame_id:
                return self.inbox.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - loop.time())))
            if frame.get("id") == frame_id:
                return frame
            self.inbox.append(frame)

    async def messages(self, room: str, count: int, timeout: float = 30.0) -> list[dict]:
        """The next ``count`` message frames of ``room``, in the order they came."""
        got: list[dict] = []
        keep = []
        for frame in self.inbox:
            (
                got
                if frame.get("type") == "message" and frame.get("room") == room and len(got) < count
                else keep
            ).append(frame)
        self.inbox = keep
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(got) < count:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - loop.time())))
            (got if frame.get("type") == "message" and frame.get("room") == room else self.inbox).append(
                frame
            )
        return got

    async def close(self) -> None:
        await self.ws.close()
