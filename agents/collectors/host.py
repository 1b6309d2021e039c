"""The agent's host: CPU, memory, disk, load (psutil)."""

from __future__ import annotations

import os

import psutil

from agents.collectors import Observation
from agents.config import TargetConfig


class HostCollector:
    def __init__(self, target: TargetConfig) -> None:
        self.path = target.address or "/"
        psutil.cpu_percent(None)  # the first call only sets the baseline

    def collect(self) -> Observation:
        obs = Observation()
        obs.add("coreplane_host_cpu_ratio", psutil.cpu_percent(None) / 100)
        mem = psutil.virtual_memory()
        obs.add("coreplane_host_memory_used_bytes", mem.total - mem.available)
        obs.add("coreplane_host_memory_total_bytes", mem.total)
        disk = psutil.disk_usage(self.path)
        obs.add("coreplane_host_disk_used_bytes", disk.used, path=self.path)
        obs.add("coreplane_host_disk_total_bytes", disk.total, path=self.path)
        load1, load5, load15 = os.getloadavg()
        obs.add("coreplane_host_load1", load1)
        obs.add("coreplane_host_load5", load5)
        obs.add("coreplane_host_load15", load15)
        if disk.percent >= 95 or mem.percent >= 95:
            obs.status = "critical"
        elif disk.percent >= 85 or mem.percent >= 90:
            obs.status = "warning"
        obs.message = (
            f"cpu {psutil.cpu_count()} core(s), memory {mem.percent:.0f} %, disk {disk.percent:.0f} %"
        )
        return obs

    def close(self) -> None:
        pass
