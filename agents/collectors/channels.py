"""A Django Channels layer (channels_redis): send/receive round trip on a probe channel."""

from __future__ import annotations

import asyncio
import time

from agents.collectors import Observation
from agents.config import TargetConfig


class ChannelsCollector:
    def __init__(self, target: TargetConfig) -> None:
        from channels_redis.core import RedisChannelLayer

        self.layer = RedisChannelLayer(hosts=[target.address], prefix=target.options.get("prefix", "asgi"))
        self.timeout = target.timeout_s
        # One loop for the collector's life: the layer's connection pool belongs to it.
        self.loop = asyncio.new_event_loop()

    async def _round_trip(self) -> float:
        channel = await self.layer.new_channel("coreplane.probe.")
        started = time.perf_counter()
        await self.layer.send(channel, {"type": "coreplane.probe", "sent": started})
        message = await asyncio.wait_for(self.layer.receive(channel), self.timeout)
        if message.get("sent") != started:
            raise RuntimeError("the probe channel returned someone else's message")
        return time.perf_counter() - started

    def collect(self) -> Observation:
        rtt = self.loop.run_until_complete(self._round_trip())
        obs = Observation()
        obs.add("coreplane_channels_round_trip_seconds", rtt)
        obs.add("coreplane_channels_up", 1)
        obs.message = f"round trip {rtt * 1000:.1f} ms"
        return obs

    def close(self) -> None:
        self.loop.run_until_complete(
            self.layer.flush_pool() if hasattr(self.layer, "flush_pool") else asyncio.sleep(0)
        )
        self.loop.close()
