"""SNMP: CPU per varbind of SiteWatch's profiles beside net-snmp, on the same snmpsim devices.

Run with `make bench` or `.venv/bin/python -m bench.snmp_bench` (no root needed). One snmpsim
process answers on 70 loopback addresses (127.0.1.1-70): 50 printers (Printer-MIB supplies,
printer and device status, alerts) and 20 switches (IF-MIB with 24 ports). Each tool reads the
same columns from every device:

- net-snmp: one `snmpbulkget` process per device asking for the profile's columns in one
  request (non-repeaters for the scalars), the most economical way its tools can do the job;
- SiteWatch: `probes.snmp.probe` on all devices at once, on one event loop in this process.

CPU is user+system time: net-snmp's from each child's own rusage (wait4), ours from this
process. "Varbinds" are the values each tool read inside the asked columns; the figure compared
is CPU per varbind. snmpsim's own CPU is not counted on either side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from probes import snmp
from probes.result import ProbeResult
from probes.target import Target
from sitewatch.config.model import SnmpCredentials, SnmpProbe
from tests.lab import wait_until
from tests.lab.responders import printer_records, switch_records

PRINTER_COLUMNS = [
    f"{snmp.SUPPLY}.6",
    f"{snmp.SUPPLY}.8",
    f"{snmp.SUPPLY}.9",
    snmp.PRINTER_STATUS,
    snmp.DEVICE_STATUS,
    f"{snmp.ALERT}.2",
    f"{snmp.ALERT}.8",
]
INTERFACE_COLUMNS = [f"{snmp.IF_ENTRY}.{n}" for n in (2, 7, 8, 13, 14, 19, 20)] + [
    f"{snmp.IFX_ENTRY}.{n}" for n in (1, 6, 10)
]
SWITCH_PORTS = 24
GOAL = 5.0


@dataclass(frozen=True, slots=True)
class Device:
    address: str
    profile: str  # printer or interface
    community: str


@dataclass(frozen=True, slots=True)
class Figures:
    wall: float
    cpu: float
    varbinds: int


def v2c(port: int, community: str) -> SnmpCredentials:
    return SnmpCredentials("2c", port, community, None, None, None, None, None)


def free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def simulator(devices: list[Device], port: int) -> Iterator[None]:
    """Run one snmpsim process answering as every device, and stop it whatever happens."""
    with tempfile.TemporaryDirectory(prefix="sitewatch-snmp-bench-") as folder:
        data = Path(folder, "data")
        data.mkdir()
        (data / "public.snmprec").write_text(printer_records("bench-printer"))
        (data / "switch.snmprec").write_text(switch_records("bench-switch", SWITCH_PORTS))
        responder = Path(sys.executable).with_name("snmpsim-command-responder")
        process = subprocess.Popen(
            [str(responder), f"--data-dir={data}", f"--cache-dir={Path(folder, 'cache')}",
             *(f"--agent-udpv4-endpoint={d.address}:{port}" for d in devices)],
            env={**os.environ, "SNMPSIM_ALLOW_ROOT": "true"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for device in (devices[0], devices[-1]):
                wait_until(partial(answers, device, port), 60, f"snmpsim on {device.address}")
            yield
        finally:
            process.terminate()
            process.wait(timeout=10)


def answers(device: Device, port: int) -> bool:
    done = subprocess.run(
        ["snmpget", "-v2c", "-c", device.community, "-r0", "-t1", "-On",
         f"{device.address}:{port}", snmp.SYS_UPTIME],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.returncode == 0


def peer_command(device: Device, port: int) -> list[str]:
    """One snmpbulkget reading everything the profile reads, in one request."""
    columns = PRINTER_COLUMNS if device.profile == "printer" else INTERFACE_COLUMNS
    scalars = [] if device.profile == "printer" else [snmp.SYS_UPTIME.removesuffix(".0")]
    return [
        "snmpbulkget", "-v2c", "-c", device.community, "-On", "-Oq", "-r1", "-t2",
        f"-Cn{len(scalars)}", f"-Cr{snmp.MAX_REPETITIONS}", f"{device.address}:{port}",
        *scalars, *columns,
    ]  # fmt: skip


def useful_lines(output: str, device: Device) -> int:
    """Count the values net-snmp read inside the asked columns, not the overshoot past them.

    A GETBULK answer holds the non-repeaters, then row after row of one varbind per column;
    a repetition past a column's end shows the next object or "No more variables".
    """
    lines = output.splitlines()
    if device.profile == "printer":
        columns, useful = PRINTER_COLUMNS, 0
    else:
        columns, useful = INTERFACE_COLUMNS, int(lines[0].startswith(f".{snmp.SYS_UPTIME} "))
        lines = lines[1:]
    for position, line in enumerate(lines):
        column = columns[position % len(columns)]
        if line.startswith(f".{column}.") and " No more variables" not in line:
            useful += 1
    return useful


def run_peer(devices: list[Device], port: int) -> Figures:
    """Run every device's snmpbulkget at once; CPU is the sum of each child's own rusage."""
    begin = time.perf_counter()
    processes = [
        subprocess.Popen(
            peer_command(d, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "MIBS": ""},  # numeric OIDs: no MIB files parsed at start-up
        )
        for d in devices
    ]
    cpu, varbinds = 0.0, 0
    for process, device in zip(processes, devices, strict=True):
        assert process.stdout is not None
        output = process.stdout.read()
        process.stdout.close()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            sys.exit(f"snmpbulkget failed on {device.address}: exit {process.returncode}")
        cpu += usage.ru_utime + usage.ru_stime
        varbinds += useful_lines(output, device)
    return Figures(time.perf_counter() - begin, cpu, varbinds)


def read_values(result: ProbeResult) -> int:
    """Count the values a result carries, as read from the device."""
    value = result.value
    if value["profile"] == "printer":
        supplies, alerts = value["supplies"], value["alerts"]
        assert isinstance(supplies, list)
        assert isinstance(alerts, list)
        return 3 * len(supplies) + 2 + 2 * len(alerts)
    interfaces = value["interfaces"]
    assert isinstance(interfaces, list)
    return 1 + len(INTERFACE_COLUMNS) * len(interfaces)


def run_ours(runner: asyncio.Runner, devices: list[Device], port: int) -> Figures:
    targets = [
        Target(
            d.address,
            SnmpProbe(d.profile, v2c(port, d.community), ()),
        )
        for d in devices
    ]

    async def everything() -> list[ProbeResult]:
        return await asyncio.gather(*(snmp.probe(t, timeout=10) for t in targets))

    before = resource.getrusage(resource.RUSAGE_SELF)
    begin = time.perf_counter()
    results = runner.run(everything())
    wall = time.perf_counter() - begin
    after = resource.getrusage(resource.RUSAGE_SELF)
    failed = [r for r in results if not r.ok]
    if failed:
        sys.exit(f"SiteWatch's probe failed on {failed[0].target}: {failed[0].detail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Figures(wall, cpu, sum(read_values(r) for r in results))


def compare(label: str, measures: Mapping[str, Callable[[], Figures]], runs: int) -> None:
    """Print each tool's median figures, and its CPU per varbind against the first tool's."""
    figures = {}
    for tool, measure in measures.items():
        results = [measure() for _ in range(runs)]
        figures[tool] = Figures(
            statistics.median(r.wall for r in results),
            statistics.median(r.cpu for r in results),
            results[-1].varbinds,
        )
    peer = next(iter(figures.values()))
    for tool, mine in figures.items():
        per_varbind = mine.cpu / mine.varbinds
        ratio = per_varbind / (peer.cpu / peer.varbinds)
        print(
            f"{label:9} {tool:10} {mine.varbinds:8d} {mine.wall:7.3f} {mine.cpu:7.3f} "
            f"{per_varbind * 1e6:14.1f} {ratio:10.2f}"
        )


def warm_up(runner: asyncio.Runner, device: Device, port: int) -> float:
    """Build SiteWatch's SNMP engine outside the measurement; return the CPU it took."""
    credentials = v2c(port, device.community)
    target = Target(device.address, SnmpProbe("system", credentials, ()))
    begin = time.process_time()
    runner.run(snmp.probe(target, timeout=10))
    return time.process_time() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--printers", type=int, default=50)
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not shutil.which("snmpbulkget"):
        sys.exit("net-snmp's tools are missing (make bench installs them when run as root)")
    if not (args.printers > 0 and args.switches > 0 and args.printers + args.switches <= 250):
        sys.exit("--printers and --switches must be at least 1 and 250 together (one /24)")
    addresses = (f"127.0.1.{n}" for n in range(1, 251))
    printers = [Device(next(addresses), "printer", "public") for _ in range(args.printers)]
    switches = [Device(next(addresses), "interface", "switch") for _ in range(args.switches)]
    port = free_port("127.0.1.1")
    print(
        f"SNMP v2c on loopback snmpsim, {args.printers} printers and {args.switches} switches "
        f"({SWITCH_PORTS} ports), median of {args.runs} runs"
    )
    print(
        f"{'profile':9} {'tool':10} {'varbinds':>8} {'wall s':>7} {'CPU s':>7} "
        f"{'CPU/varbind us':>14} {'x net-snmp':>10}"
    )
    with simulator(printers + switches, port), asyncio.Runner() as runner:
        engine_cpu = warm_up(runner, printers[0], port)
        for label, devices in (("printer", printers), ("interface", switches)):
            measures = {
                "net-snmp": partial(run_peer, devices, port),
                "sitewatch": partial(run_ours, runner, devices, port),
            }
            compare(label, measures, args.runs)
        runner.run(_close())
    print(
        f"goal: CPU per varbind within {GOAL:g}x net-snmp. SiteWatch's engine start-up "
        f"(once per agent, not counted above): {engine_cpu:.3f} s CPU"
    )


async def _close() -> None:
    snmp.close()


if __name__ == "__main__":
    main()
