"""ICMP on loopback and in throwaway network namespaces: raw, unprivileged, and refused.

Dead addresses, removed devices and cut links are tested on the lab (tests/test_lab_probes.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from probes import icmp
from probes.result import now
from probes.target import Target
from sitewatch.config.model import IcmpProbe, TcpProbe

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from probes.icmp import probe
    from probes.target import Target
    from sitewatch.config.model import IcmpProbe
    result = asyncio.run(probe(Target(sys.argv[1], IcmpProbe(count=2, interval=0.01)), timeout=1))
    print(json.dumps(result.to_json()))
    """
)
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def need_root() -> None:
    """Skip unless root (raw sockets, namespaces); under CI, fail instead."""
    problem = ""
    if os.geteuid() != 0:
        problem = "needs root"
    elif not (shutil.which("setpriv") and shutil.which("unshare")):
        problem = "needs util-linux's setpriv and unshare"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}, and CI must run this test")
        pytest.skip(problem)


def run_as_nobody(
    address: str, *, namespace_setup: str | None = None, user: list[str] = NOBODY
) -> dict[str, object]:
    """Run one probe as an unprivileged user; optionally inside a fresh network namespace."""
    command = [*user, sys.executable, "-c", SCRIPT, address]
    if namespace_setup is not None:
        shell = f"{namespace_setup} && exec {' '.join(map(_quote, command))}"
        command = ["unshare", "--net", "sh", "-c", shell]
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, cwd=Path.cwd(), timeout=30,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )  # fmt: skip
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\"'\"'") + "'"


async def test_loopback_answers_with_rtt_and_no_loss() -> None:
    need_root()
    result = await icmp.probe(Target("127.0.0.1", IcmpProbe(count=3, interval=0.01)), timeout=1)
    assert result.ok, result.detail
    assert result.loss == 0
    assert result.value["sent"] == result.value["received"] == 3
    assert result.rtt_ms is not None
    assert 0 < result.rtt_ms < 100
    assert result.value["rtt_min_ms"] <= result.value["rtt_avg_ms"] <= result.value["rtt_max_ms"]  # type: ignore[operator]


async def test_sweep_keeps_order_and_names_targets_by_id() -> None:
    need_root()
    targets = [Target(f"127.0.{i // 200}.{i % 200 + 1}", IcmpProbe(count=1), id=f"t{i}")
               for i in range(400)]  # fmt: skip
    results = await icmp.sweep(targets, timeout=2)
    assert [r.target for r in results] == [f"t{i}" for i in range(400)]
    assert all(r.ok for r in results), [r.detail for r in results if not r.ok][:3]
    assert [r.value["address"] for r in results] == [t.address for t in targets]


async def test_names_that_do_not_resolve_fail_as_resolve() -> None:
    result = await icmp.probe(Target("no-such-host.invalid", IcmpProbe()), timeout=1)
    assert not result.ok
    assert result.error_kind == "resolve"


async def test_a_spec_of_another_kind_is_a_bug() -> None:
    with pytest.raises(TypeError, match="icmp probe given a tcp spec"):
        await icmp.probe(Target("127.0.0.1", TcpProbe(port=1)), timeout=1)


def test_unprivileged_datagram_icmp_is_used_when_allowed() -> None:
    need_root()
    setup = "ip link set lo up && sysctl -qw net.ipv4.ping_group_range='0 2147483647'"
    result = run_as_nobody("127.0.0.1", namespace_setup=setup)
    assert result["ok"] is True, result
    assert result["loss"] == 0


def test_no_permission_at_all_says_what_to_change() -> None:
    need_root()
    setup = "ip link set lo up && sysctl -qw net.ipv4.ping_group_range='1 0'"
    result = run_as_nobody("127.0.0.1", namespace_setup=setup)
    assert result["ok"] is False
    assert result["error_kind"] == "permission"
    assert "CAP_NET_RAW" in str(result["detail"])
    assert "ping_group_range" in str(result["detail"])


def test_jitter_is_the_mean_step_between_round_trips() -> None:
    echoes = [icmp.Echo(1.0), icmp.Echo(3.0), icmp.Echo(None, "timeout"), icmp.Echo(2.0)]
    result = icmp.summarise("x", now(), echoes, "10.99.0.1")
    assert result.ok
    assert result.loss == 0.25
    assert result.value["jitter_ms"] == 1.5  # |3-1| and |2-3|
    assert result.rtt_ms == 2.0


def test_send_errors_are_failed_results() -> None:
    """A blackhole route and a missing route refuse the send itself: no exception escapes."""
    need_root()
    setup = "ip link set lo up && ip route add blackhole 10.97.9.0/24"
    result = run_as_nobody("10.97.9.1", namespace_setup=setup, user=[])
    assert (result["ok"], result["error_kind"]) == (False, "unreachable"), result
    assert "cannot send" in str(result["detail"])
    result = run_as_nobody("10.97.10.1", namespace_setup="ip link set lo up", user=[])
    assert (result["ok"], result["error_kind"]) == (False, "unreachable"), result
    assert "Network is unreachable" in str(result["detail"])
