"""A `/ws/rt` client in Python (docs/realtime.md): subscribe to a room, print each message
once and in order, and survive disconnects by resuming with ``since``.

    pip install websockets httpx
    python realtime_client.py --url ws://127.0.0.1:8000/ws/rt --room chat:42 --token "$TOKEN"

Your application's backend mints the token (``POST /api/v1/realtime/tokens`` with an
operator credential) and hands it to the client; for a try-out, ``--api URL`` with
``COREPLANE_TOKEN`` set mints one here. Each message is printed as one JSON line
``{"room", "seq", "from", "data"}``; ``--count N`` exits after N messages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys

import httpx
import websockets

BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.5, 15.0
STOP_CODES = {4403, 4429}  # refused for good: reconnecting would be refused again


def mint_token(api: str, credential: str, user: str, room: str) -> str:
    """What the application's backend does for its user (never ship the operator credential
    to a browser or a device)."""
    answer = httpx.post(
        f"{api}/api/v1/realtime/tokens",
        json={"user": user, "join": [room], "publish": [room]},
        headers={"Authorization": f"Bearer {credential}"},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()["token"]


class Follower:
    """Follows one room across reconnects: ``last`` is the last sequence printed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.token = args.token
        self.last: int | None = args.since  # None: start from now, not from history
        self.printed = 0

    def done(self) -> bool:
        return self.args.count is not None and self.printed >= self.args.count

    async def run(self) -> None:
        delay = BACKOFF_FIRST_S
        while not self.done():
            try:
                await self.session()
                delay = BACKOFF_FIRST_S  # a session that ended cleanly: back at once
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                log(f"closed ({code}): {exc.rcvd.reason if exc.rcvd else 'no close frame'}")
                if code in STOP_CODES:
                    raise SystemExit(f"refused for good ({code})") from None
                if code == 4401 and self.args.api:
                    self.token = None  # expired: mint a fresh one below
                if code == 1012:
                    delay = BACKOFF_FIRST_S  # the server restarts: another one takes us soon
            except (TimeoutError, OSError) as exc:
                log(f"cannot connect: {type(exc).__name__}: {exc}")
            if self.done():
                return
            # Jitter spreads the reconnects of many clients after a server went away.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not a secret
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def session(self) -> None:
        if self.token is None:
            self.token = mint_token(
                self.args.api, os.environ["COREPLANE_TOKEN"], self.args.user, self.args.room
            )
        url = f"{self.args.url}?token={self.token}"
        async with websockets.connect(url, max_size=None, open_timeout=10) as ws:
            pinger = asyncio.create_task(self.ping(ws))
            try:
                await self.follow(ws)
            finally:
                pinger.cancel()

    async def ping(self, ws: websockets.ClientConnection) -> None:
        """The server closes a connection silent for 1.5 heartbeats (4408): a ping each
        heartbeat keeps it open, and the pong shows the server is still there."""
        while True:
            await asyncio.sleep(self.args.heartbeat)
            await ws.send(json.dumps({"type": "ping"}))

    async def follow(self, ws: websockets.ClientConnection) -> None:
        subscribe = {"type": "subscribe", "room": self.args.room, "id": "sub"}
        if self.last is not None:
            subscribe["since"] = self.last  # what was missed first, then live
        await ws.send(json.dumps(subscribe))
        async for text in ws:
            frame = json.loads(text)
            kind = frame.get("type")
            if kind == "message" and frame["room"] == self.args.room:
                self.on_message(frame)
                if self.done():
                    return
            elif kind == "subscribed":
                self.on_subscribed(frame)
            elif kind == "error":
                log(f"error {frame['code']} ({frame.get('field')}): {frame['message']}")
                if frame.get("id") == "sub":
                    raise SystemExit(f"cannot subscribe: {frame['message']}")
            elif kind == "reconnect":
                log("the server asks us to reconnect")  # a 1012 close follows
            elif kind in ("join", "leave"):
                log(f"{frame['user']} {kind}s {frame['room']}")

    def on_subscribed(self, frame: dict) -> None:
        if frame.get("recovered") is False:
            # History no longer reaches back to ``since``: some messages are gone for good
            # (reload the state from the application here).
            log(f"history no longer reaches back to {self.last}: reloading the state")
            if self.last is not None and frame["seq"] < self.last:
                self.last = frame["seq"]  # the room started over (a memory server restarted)
        if self.last is None:
            self.last = frame["seq"]
        log(f"subscribed to {frame['room']} at {frame['seq']} (missed {frame.get('missed', 0)})")

    def on_message(self, frame: dict) -> None:
        if self.last is not None and frame["seq"] <= self.last:
            return  # the server sends each once; this guards a client's own replays
        self.last = frame["seq"]
        self.printed += 1
        line = {"room": frame["room"], "seq": frame["seq"], "from": frame["from"], "data": frame["data"]}
        print(json.dumps(line), flush=True)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the websocket, ws://host:port/ws/rt")
    parser.add_argument("--room", required=True)
    parser.add_argument("--token", help="a realtime token (else minted through --api)")
    parser.add_argument("--api", help="the control plane's base URL, to mint a token (COREPLANE_TOKEN)")
    parser.add_argument("--user", default="example", help="the user a minted token names")
    parser.add_argument("--since", type=int, help="start after this sequence (default: from now)")
    parser.add_argument("--count", type=int, help="exit after this many messages")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="seconds between pings "
                        "(at most the server's COREPLANE_REALTIME__HEARTBEAT_S)")  # fmt: skip
    args = parser.parse_args()
    if not args.token and not args.api:
        parser.error("give --token, or --api with COREPLANE_TOKEN set")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Follower(args).run())


if __name__ == "__main__":
    main()
