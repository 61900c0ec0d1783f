"""The shipped unit files pass `systemd-analyze verify` and keep their hardening."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
SITEWATCH = Path(sys.executable).with_name("sitewatch")


def verify(unit: Path, tmp_path: Path) -> str:
    """Return what `systemd-analyze verify` says about a copy run against our real script."""
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing on a CI machine: install systemd")
        pytest.skip("systemd-analyze is not installed")
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/usr/local/bin/sitewatch", str(SITEWATCH)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
    )
    return (result.stdout + result.stderr).strip() + ("" if result.returncode == 0 else " (exit)")


@pytest.mark.parametrize("name", ["sitewatch-agent.service", "sitewatch-collector.service"])
def test_unit_verifies_without_a_word(name: str, tmp_path: Path) -> None:
    assert verify(UNITS / name, tmp_path) == ""


def test_verify_does_complain_about_a_broken_unit(tmp_path: Path) -> None:
    broken = tmp_path / "broken" / "sitewatch-agent.service"
    broken.parent.mkdir()
    broken.write_text(
        (UNITS / "sitewatch-agent.service").read_text().replace("ProtectHome=", "ProtectHomee=")
    )
    assert "Unknown key 'ProtectHomee'" in verify(broken, tmp_path)


@pytest.mark.parametrize(
    ("name", "command"),
    [("sitewatch-agent.service", "agent"), ("sitewatch-collector.service", "collector")],
)
def test_unit_is_hardened_and_runs_its_command(name: str, command: str) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    service = parser["Service"]
    assert service["ExecStart"].split()[1:3] == [command, "--config"]
    assert service["User"] == "sitewatch"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["StateDirectory"] == "sitewatch"
    assert service["AmbientCapabilities"] == service["CapabilityBoundingSet"] == "CAP_NET_RAW"
