"""The host probe reads this machine's real health figures."""

from __future__ import annotations

from pathlib import Path

import psutil

from probes import host
from probes.target import HostProbe, Target


async def test_host_health_is_read(tmp_path: Path) -> None:
    result = await host.probe(Target("localhost", HostProbe(path=tmp_path)), timeout=5)
    assert result.ok, result.detail
    value = result.value
    assert value["disk_path"] == str(tmp_path)
    assert 0 <= value["cpu_percent"] <= 100  # type: ignore[operator]
    assert value["cpu_count"] == psutil.cpu_count()
    assert 0 < value["memory_percent"] < 100  # type: ignore[operator]
    assert 0 < value["disk_free_bytes"] <= psutil.disk_usage(str(tmp_path)).total  # type: ignore[operator]
    assert value["uptime_s"] > 0  # type: ignore[operator]
    assert "lo" not in value["interfaces"]  # type: ignore[operator]


async def test_host_probe_times_out_cleanly() -> None:
    result = await host.probe(Target("localhost", HostProbe()), timeout=0.01)
    assert not result.ok
    assert result.error_kind == "timeout"
