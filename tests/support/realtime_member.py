"""A room member in a process of its own, for tests that kill -9 or SIGSTOP a client:

    python -m tests.support.realtime_member WS_URL ROOM PINGS_FILE

It subscribes to ROOM, writes "subscribed" to stdout, then pings every 0.5 s and appends the
Unix time of each ping it sent to PINGS_FILE (so the test knows when the server last heard
from it, even after it was stopped). It never closes on its own: it runs until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import websockets

PING_EVERY_S = 0.5


async def member(url: str, room: str, pings: Path) -> None:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "subscribe", "room": room, "id": "sub"}))
        while json.loads(await ws.recv()).get("id") != "sub":
            pass
        print("subscribed", flush=True)
        reader = asyncio.create_task(_discard(ws))
        with pings.open("a", buffering=1) as out:
            while not reader.done():
                await ws.send(json.dumps({"type": "ping"}))
                out.write(f"{time.time():.6f}\n")
                await asyncio.sleep(PING_EVERY_S)
        reader.result()


async def _discard(ws: websockets.ClientConnection) -> None:
    # Read (and drop) what the room sends, so the server never sees this member as slow.
    async for _frame in ws:
        pass


if __name__ == "__main__":
    asyncio.run(member(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
