"""After `down`, nothing of the lab is left on the host: namespaces, links, routes, processes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_INVENTORY, require_lab
from tests.lab import Lab, LabError, sweep_stale
from tests.lab.lab import MANIFESTS

pytestmark = pytest.mark.lab


def host_state() -> dict[str, object]:
    def ip(*args: str) -> object:
        return json.loads(
            subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
            or "[]"
        )

    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return {
        "netns": ip("netns", "list"),
        "links": sorted(link["ifname"] for link in ip("link")),  # type: ignore[attr-defined]
        "lo": ip("addr", "show", "lo"),
        "routes": ip("route"),
        "responders": sorted(
            line
            for line in processes.stdout.splitlines()
            if line.startswith(("sipp", "/"))
            and any(name in line for name in ("sipp", "snmpsim", "snmpd"))
        ),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
    }


def test_down_leaves_nothing_behind() -> None:
    require_lab()
    sweep_stale()
    before = host_state()
    lab = Lab(EXAMPLE_INVENTORY)
    lab.up()
    try:
        during = host_state()
        assert during != before
        # a namespace per site and the core's
        assert len(during["netns"]) == len(before["netns"]) + len(lab.plan.sites) + 1  # type: ignore[arg-type]
        assert during["ip_forward"] == before["ip_forward"]  # forwarding only on the lab's veths
        assert any("snmpd" in line for line in during["responders"])  # type: ignore[attr-defined]
        lab.cut_link("willowvale-mpls")  # a lab in any state must come down whole
        lab.remove_device("cc-prn-01")
    finally:
        lab.down()
    assert host_state() == before
    assert not (MANIFESTS / f"{lab.prefix}.json").exists()
    assert not lab.workdir.exists()


def test_a_failed_up_removes_what_it_built(monkeypatch: pytest.MonkeyPatch) -> None:
    require_lab()
    sweep_stale()
    before = host_state()
    lab = Lab(EXAMPLE_INVENTORY)

    def responders_fail() -> None:
        lab._spawn(["sleep", "60"])  # a process is running when the failure comes
        raise LabError("sipp answering as a phone did not happen within 30s")

    monkeypatch.setattr(lab, "_start_responders", responders_fail)
    with pytest.raises(LabError, match="did not happen within"):
        lab.up()
    assert host_state() == before
    assert not (MANIFESTS / f"{lab.prefix}.json").exists()
