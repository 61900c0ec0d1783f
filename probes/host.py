"""The agent machine's own health: CPU, memory, the state directory's disk, NICs, uptime.

An agent on a failing disk or a starved CPU produces bad evidence about its site, so the agent
reports on itself too. psutil reads /proc synchronously, so the sweep runs in a worker thread.
Clock offset is not measured here: the collector compares each heartbeat's clock with its own.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psutil

from probes.result import JsonValue, ProbeResult, now, short
from probes.target import HostProbe, Target

CPU_SAMPLE_SECONDS = 0.2  # cpu_percent needs two readings; this is the gap between them


async def probe(target: Target, *, timeout: float) -> ProbeResult:
    """Read this machine's health; fails only if the readings cannot be taken in time."""
    spec = target.spec
    if not isinstance(spec, HostProbe):
        raise TypeError(f"host probe given a {spec.kind} spec")
    started = now()
    try:
        async with asyncio.timeout(timeout):
            value = await asyncio.to_thread(read_health, spec.path)
    except TimeoutError:
        return ProbeResult(
            target.name, "host", started, ok=False, error_kind="timeout",
            detail=f"health readings took longer than {timeout:g}s",
        )  # fmt: skip
    except OSError as err:
        return ProbeResult(
            target.name, "host", started, ok=False, error_kind="permission",
            detail=short(f"cannot read health: {err}"),
        )  # fmt: skip
    return ProbeResult(target.name, "host", started, ok=True, value=value)


def read_health(path: Path) -> dict[str, JsonValue]:
    """Return the health figures of this machine; blocking, call it from a thread."""
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(path))
    interfaces: dict[str, JsonValue] = {
        name: {
            "errors_in": counters.errin,
            "errors_out": counters.errout,
            "drops_in": counters.dropin,
            "drops_out": counters.dropout,
        }
        for name, counters in psutil.net_io_counters(pernic=True).items()
        if name != "lo"
    }
    load1, load5, load15 = psutil.getloadavg()
    return {
        "cpu_percent": psutil.cpu_percent(interval=CPU_SAMPLE_SECONDS),
        "cpu_count": psutil.cpu_count() or 1,
        "load": [round(load1, 2), round(load5, 2), round(load15, 2)],
        "memory_percent": memory.percent,
        "memory_available_bytes": memory.available,
        "disk_path": str(path),
        "disk_percent": disk.percent,
        "disk_free_bytes": disk.free,
        "interfaces": interfaces,
        "uptime_s": round(time.time() - psutil.boot_time(), 1),
    }
