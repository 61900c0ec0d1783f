"""SNMP against snmpsim on loopback, checked against net-snmp's own tools on the same agent."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes import snmp
from probes.result import ProbeResult
from probes.target import Target
from sitewatch.config.model import (
    CustomOid,
    InterfaceProbe,
    SnmpCredentials,
    SnmpProbe,
    SnmpVersion,
)
from tests.lab import wait_until
from tests.lab.responders import printer_records, switch_records

V2C = SnmpCredentials("2c", 0, "public", None, None, None, None, None)
V3_USER, V3_AUTH, V3_PRIV = "monitor", "auth-secret-1", "priv-secret-1"


RECORDINGS = ("linux-full-walk", "winxp-full-walk")


def recorded(name: str) -> Path:
    return Path(str(resources.files("snmpsim"))) / "data" / "recorded" / f"{name}.snmprec"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def snmpget(port: int, community: str, *oids: str) -> list[str]:
    done = subprocess.run(
        ["snmpget", "-v2c", "-c", community, "-Oqv", "-r0", "-t1", f"127.0.0.1:{port}", *oids],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return done.stdout.split("\n")[:-1]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """snmpsim on loopback: community `public` is a printer, `switch` a switch, plus a v3 user."""
    if shutil.which("snmpget") is None:
        if os.environ.get("CI"):
            pytest.fail("net-snmp's tools are missing; CI must run this test")
        pytest.skip("net-snmp's snmpget is not installed")
    folder = tmp_path_factory.mktemp("snmpsim")
    (folder / "data").mkdir()
    (folder / "data" / "public.snmprec").write_text(printer_records("lab-printer"))
    (folder / "data" / "switch.snmprec").write_text(switch_records("lab-switch", ports=3))
    for recording in RECORDINGS:  # real devices' walks that snmpsim ships
        shutil.copy(recorded(recording), folder / "data" / f"{recording}.snmprec")
    port = free_udp_port()
    responder = Path(sys.executable).with_name("snmpsim-command-responder")
    process = subprocess.Popen(
        [str(responder), f"--data-dir={folder / 'data'}", f"--cache-dir={folder / 'cache'}",
         f"--agent-udpv4-endpoint=127.0.0.1:{port}", f"--v3-user={V3_USER}",
         f"--v3-auth-key={V3_AUTH}", "--v3-auth-proto=SHA", f"--v3-priv-key={V3_PRIV}",
         "--v3-priv-proto=AES"],
        env={**os.environ, "SNMPSIM_ALLOW_ROOT": "true"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: _answers(port), 30, "snmpsim answering on loopback")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(port: int) -> bool:
    try:
        return bool(snmpget(port, "public", "1.3.6.1.2.1.1.5.0"))
    except subprocess.CalledProcessError:
        return False


@pytest.fixture
async def closing() -> AsyncIterator[None]:
    """Close the probe's shared SNMP engine at the end of each test's event loop."""
    yield
    snmp.close()


def table(result: ProbeResult, key: str) -> list[dict[str, Any]]:
    """Return a list-of-records field of a result's value, typed for the assertions."""
    rows = result.value[key]
    assert isinstance(rows, list)
    return cast(list[dict[str, Any]], rows)


def target(
    port: int, profile: str, credentials: SnmpCredentials = V2C, oids: Sequence[CustomOid] = ()
) -> Target:
    credentials = SnmpCredentials(
        credentials.version, port, *[getattr(credentials, f) for f in (
            "community", "user", "auth_protocol", "auth_password", "priv_protocol",
            "priv_password", "context")],
    )  # fmt: skip
    return Target("127.0.0.1", SnmpProbe(profile, credentials, tuple(oids)), id="dev")


async def test_printer_supplies_match_net_snmp(agent: int, closing: None) -> None:
    result = await snmp.probe(target(agent, "printer"), timeout=3)
    assert result.ok, result.detail
    supplies = table(result, "supplies")
    levels = snmpget(agent, "public", *(f"1.3.6.1.2.1.43.11.1.1.9.1.{n}" for n in range(1, 5)))
    assert [s["level"] for s in supplies] == [int(v) for v in levels]
    by_name = {s["description"]: s for s in supplies}
    assert by_name["Black Toner Cartridge"]["percent"] == 74.0
    assert by_name["Cyan Toner Cartridge"]["state"] == "low"
    assert by_name["Waste Toner Box"]["state"] == "some_remaining"
    assert by_name["Fuser Kit"]["state"] == "unknown"
    assert (result.value["printer_status"], result.value["device_status"]) == ("idle", "running")
    assert table(result, "alerts") == [{"severity": "warning", "description": "Cyan toner low"}]


async def test_interfaces_match_net_snmp_bulkwalk(agent: int, closing: None) -> None:
    credentials = SnmpCredentials("2c", agent, "switch", None, None, None, None, None)
    result = await snmp.probe(target(agent, "interface", credentials), timeout=3)
    assert result.ok, result.detail
    walked = subprocess.run(  # noqa: ASYNC221 -- the peer tool's answer, before or after is fine
        ["snmpbulkwalk", "-v2c", "-c", "switch", "-Oqn", f"127.0.0.1:{agent}",
         "1.3.6.1.2.1.31.1.1.1.6"],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout.split("\n")[:-1]  # fmt: skip
    expected = [int(line.split()[1]) for line in walked]
    interfaces = table(result, "interfaces")
    assert [i["in_octets"] for i in interfaces] == expected
    assert expected[2] == 2**63 + 5  # 64-bit counters survive the trip
    assert [i["oper"] for i in interfaces] == ["up", "down", "up"]
    assert result.value["uptime_s"] == 1234.56


def bulkwalk(port: int, community: str, column: str) -> dict[str, str]:
    """Return net-snmp's walk of one column: index suffix -> value as it prints it."""
    walked = subprocess.run(
        ["snmpbulkwalk", "-v2c", "-c", community, "-Oqn", f"127.0.0.1:{port}", column],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout.splitlines()  # fmt: skip
    prefix = f".{column}."
    return {
        line[len(prefix) :].split()[0]: line.split(maxsplit=1)[1]
        for line in walked
        if line.startswith(prefix)
    }


@pytest.mark.parametrize("recording", RECORDINGS)
async def test_interfaces_of_recorded_devices_match_net_snmp(
    agent: int, closing: None, recording: str
) -> None:
    credentials = SnmpCredentials("2c", agent, recording, None, None, None, None, None)
    result = await snmp.probe(target(agent, "interface", credentials), timeout=3)
    assert result.ok, result.detail
    interfaces = table(result, "interfaces")
    oper = bulkwalk(agent, recording, "1.3.6.1.2.1.2.2.1.8")
    assert [str(i["index"]) for i in interfaces] == list(oper)
    assert [i["oper"] for i in interfaces] == [snmp.IF_STATES[int(v)] for v in oper.values()]
    octets = bulkwalk(agent, recording, "1.3.6.1.2.1.31.1.1.1.6")  # absent on the Windows XP box
    assert [i["in_octets"] for i in interfaces] == [
        int(octets[str(i["index"])]) if octets else None for i in interfaces
    ]
    errors = bulkwalk(agent, recording, "1.3.6.1.2.1.2.2.1.14")
    assert [i["in_errors"] for i in interfaces] == [int(v) for v in errors.values()]
    assert all(isinstance(i["descr"], str) and "\x00" not in i["descr"] for i in interfaces)


async def test_system_profile_and_custom_thresholds(agent: int, closing: None) -> None:
    system = await snmp.probe(target(agent, "system"), timeout=3)
    assert system.ok, system.detail
    assert system.value["name"] == "lab-printer"
    assert system.value["uptime_s"] == 3600.0
    toner = CustomOid("cyan", "1.3.6.1.2.1.43.11.1.1.9.1.2", 500, None)
    low = await snmp.probe(target(agent, "custom", oids=[toner]), timeout=3)
    assert (low.ok, low.error_kind, low.detail) == (False, "threshold", "cyan is 240, below 500")
    fine = CustomOid("cyan", "1.3.6.1.2.1.43.11.1.1.9.1.2", 100, 300)
    assert (await snmp.probe(target(agent, "custom", oids=[fine]), timeout=3)).ok
    missing = CustomOid("signal", "1.3.6.1.4.1.41112.1.4.5.1.5.1", -80, None)
    absent = await snmp.probe(target(agent, "custom", oids=[missing]), timeout=3)
    assert (absent.ok, absent.error_kind) == (False, "protocol")
    assert "no such object" in absent.detail


async def test_v3_with_the_right_and_a_wrong_key(agent: int, closing: None) -> None:
    good = SnmpCredentials("3", 0, None, V3_USER, "sha", V3_AUTH, "aes", V3_PRIV, "public")
    result = await snmp.probe(target(agent, "system", good), timeout=3)
    assert result.ok, result.detail
    bad = SnmpCredentials("3", 0, None, V3_USER, "sha", "not-the-key", "aes", V3_PRIV, "public")
    result = await snmp.probe(target(agent, "system", bad), timeout=3)
    assert (result.ok, result.error_kind) == (False, "auth"), result.detail


async def test_wrong_community_and_silence_time_out(agent: int, closing: None) -> None:
    wrong = SnmpCredentials("2c", 0, "nope", None, None, None, None, None)
    result = await snmp.probe(target(agent, "system", wrong), timeout=1)
    assert (result.ok, result.error_kind) == (False, "timeout")
    assert "wrong community" in result.detail
    silent = await snmp.probe(target(free_udp_port(), "system"), timeout=1)
    assert not silent.ok
    assert silent.error_kind in ("timeout", "unreachable")


class Mangler(asyncio.DatagramProtocol):
    """A fake agent between the probe and snmpsim that spoils every answer it passes on.

    With `garbage` it answers random bytes itself; otherwise it forwards the request to the
    real agent and returns its reply cut at `cut` bytes with the byte at `flip` inverted, so
    the probe's request id matches and the decoder gets deep into a broken message.
    """

    def __init__(self, agent: int, garbage: list[bytes], cut: int, flip: int) -> None:
        self.agent, self.garbage, self.cut, self.flip = agent, garbage, cut, flip
        self.answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.garbage:
            for junk in self.garbage:
                self.transport.sendto(junk, addr)
            self.answered += 1
            return
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
            upstream.settimeout(2)
            upstream.sendto(data, ("127.0.0.1", self.agent))
            reply = bytearray(upstream.recv(65535))  # blocking is fine: snmpsim is on loopback
        if self.flip < len(reply):
            reply[self.flip] ^= 0xFF
        self.transport.sendto(bytes(reply[: self.cut]), addr)
        self.answered += 1


@settings(
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    garbage=st.one_of(st.just([]), st.lists(st.binary(max_size=120), min_size=1, max_size=3)),
    cut=st.integers(0, 200),
    flip=st.integers(0, 200),
    profile=st.sampled_from(["system", "printer"]),
)
async def test_spoilt_answers_never_escape_the_probe(  # noqa: PLR0917 -- hypothesis fills them
    agent: int, closing: None, garbage: list[bytes], cut: int, flip: int, profile: str
) -> None:
    """Random bytes, truncated and corrupted replies: always a result, in time, never a raise."""
    assert (await snmp.probe(target(agent, "system"), timeout=3)).ok  # the engine is warm
    loop = asyncio.get_running_loop()
    escaped: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: escaped.append(context))
    transport, mangler = await loop.create_datagram_endpoint(
        lambda: Mangler(agent, garbage, cut, flip), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    try:
        begin = loop.time()
        result = await snmp.probe(target(port, profile), timeout=0.3)
        assert loop.time() - begin < 1.0
        assert mangler.answered >= 1
        if not result.ok:
            assert result.error_kind in ("timeout", "protocol"), result.detail
        else:  # a flipped byte inside a value can still make a well-formed answer
            assert not garbage
        assert escaped == []  # nothing went wrong behind the probe's back either
    finally:
        transport.close()
        loop.set_exception_handler(None)


# -- turning counters into rates --------------------------------------------------------------


def sample(octets: int, errors: int = 0) -> snmp.InterfaceSample:
    return snmp.InterfaceSample(octets, octets, errors, errors)


def test_rates_over_a_64_bit_wrap_and_across_a_reboot() -> None:
    before = (100.0, {1: sample(2**64 - 1000)})
    after = (110.0, {1: sample(1000)})
    assert snmp.interface_rates(before, after)[1]["in_bps"] == 2000 * 8 / 10
    rebooted = (5.0, {1: sample(10)})
    assert snmp.interface_rates(after, rebooted) == {}  # uptime went backwards: no false spike
    assert snmp.rebooted(110.0, 5.0)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**40), st.floats(1, 10_000))
def test_rates_are_never_negative(start: int, step: int, seconds: float) -> None:
    end = (start + step) % 2**64
    rates = snmp.interface_rates((0.0, {1: sample(start)}), (seconds, {1: sample(end)}))
    assert rates[1]["in_bps"] == pytest.approx(step * 8 / seconds)


def test_the_probe_command_reads_a_printer_and_a_v3_agent(agent: int) -> None:
    """`sitewatch probe snmp` as an engineer types it, against the same agent as snmpget."""
    base = [sys.executable, "-m", "sitewatch.cli", "probe", "snmp", "127.0.0.1", "--port"]
    printer = subprocess.run(
        [*base, str(agent), "--profile", "printer", "--json"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert printer.returncode == 0, printer.stderr
    record = json.loads(printer.stdout)
    assert record["ok"], record
    levels = snmpget(agent, "public", *(f"1.3.6.1.2.1.43.11.1.1.9.1.{n}" for n in range(1, 5)))
    assert [s["level"] for s in record["value"]["supplies"]] == [int(v) for v in levels]
    v3 = subprocess.run(
        [*base, str(agent), "--snmp-version", "3", "--user", V3_USER, "--auth-protocol", "sha",
         "--auth-password", V3_AUTH, "--priv-protocol", "aes", "--priv-password", V3_PRIV,
         "--context", "public"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert v3.returncode == 0, v3.stderr
    assert v3.stdout.startswith("snmp 127.0.0.1: ok"), v3.stdout
    assert "lab-printer" in v3.stdout


async def test_v1_walks_with_getnext_to_the_end_of_the_view(agent: int, closing: None) -> None:
    """SNMPv1 has no GETBULK: the walk steps with GETNEXT and stops at noSuchName."""
    v1 = SnmpCredentials("1", agent, "public", None, None, None, None, None)
    result = await snmp.probe(target(agent, "printer", v1), timeout=3)
    assert result.ok, result.detail
    v2c = await snmp.probe(target(agent, "printer"), timeout=3)
    assert result.value == v2c.value


# -- the interface probe: one row of a router, for a link --------------------------------------


def interface_target(
    port: int, version: SnmpVersion, ifname: str | None, ifindex: int | None
) -> Target:
    credentials = SnmpCredentials(version, port, "switch", None, None, None, None, None)
    return Target("127.0.0.1", InterfaceProbe(credentials, ifname, ifindex), id="wv-mpls")


async def test_the_interface_probe_reads_one_row_by_name_or_index(
    agent: int, closing: None
) -> None:
    up = await snmp.interface_probe(interface_target(agent, "2c", "Gi0/3", None), timeout=3)
    assert (up.ok, up.target, up.kind) == (True, "wv-mpls", "interface")
    assert (up.value["ifindex"], up.value["oper"], up.value["admin"]) == (3, "up", "up")
    assert (up.value["in_octets"], up.value["in_errors"]) == (2**63 + 5, 30)
    assert up.value["uptime_s"] == 1234.56
    down = await snmp.interface_probe(interface_target(agent, "2c", None, 2), timeout=3)
    assert (down.ok, down.error_kind) == (False, "unexpected")
    assert down.detail == "Gi0/2 (ifIndex 2) is down, admin up"
    # SNMPv1 has no Counter64 (no ifXTable octets): the name is found in ifDescr instead.
    old = await snmp.interface_probe(interface_target(agent, "1", "Gi0/1", None), timeout=3)
    assert (old.ok, old.value["ifindex"], old.value["in_octets"]) == (True, 1, None), old.detail


async def test_the_interface_probe_names_what_it_cannot_find(agent: int, closing: None) -> None:
    missing = await snmp.interface_probe(interface_target(agent, "2c", "Gi9/9", None), timeout=3)
    assert (missing.ok, missing.error_kind) == (False, "protocol")
    assert missing.detail == "no interface named Gi9/9 on 127.0.0.1"
    assert missing.value["oper"] is None
    old = await snmp.interface_probe(interface_target(agent, "1", None, 99), timeout=3)
    assert (old.error_kind, old.detail) == ("protocol", "no interface with ifIndex 99 on 127.0.0.1")
    wrong = SnmpCredentials("2c", agent, "nobody-here", None, None, None, None, None)
    silent = Target("127.0.0.1", InterfaceProbe(wrong, "Gi0/1", None), id="wv-mpls")
    refused = await snmp.interface_probe(silent, timeout=0.5)
    assert (refused.ok, refused.error_kind, refused.value["oper"]) == (False, "timeout", None)
