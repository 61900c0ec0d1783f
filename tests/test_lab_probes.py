"""Probes against the lab: the hub's view and a site agent's view, before and after a cut."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from probes import icmp, sip, snmp, tcp
from probes.target import Target
from sitewatch.config.model import IcmpProbe, SipProbe, SnmpCredentials, SnmpProbe, TcpProbe
from tests.lab import Lab

pytestmark = pytest.mark.lab


def probe_from_site(lab: Lab, site: str, *args: str) -> dict[str, object]:
    """Run `sitewatch probe ... --json` inside a site's namespace, where its agent runs."""
    done = lab.exec_in(site, [sys.executable, "-m", "sitewatch.cli", "probe", *args, "--json"])
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


async def test_sweep_of_every_device_then_a_chain_cut(whole_lab: Lab) -> None:
    devices = whole_lab.plan.devices
    targets = [Target(str(d.address), IcmpProbe(count=2, interval=0.05), id=d.id) for d in devices]
    before = await icmp.sweep(targets, timeout=1)
    assert [r.target for r in before if not r.ok] == []
    whole_lab.cut_link("customer-care-mpls")
    after = await icmp.sweep(targets, timeout=1)
    dark = {d.id for d in devices if d.site in ("customer-care", "town-hall")}
    assert {r.target for r in after if not r.ok} == dark
    # The hub's blackhole refuses the send itself: a failed result at once, not an exception.
    assert {r.error_kind for r in after if not r.ok} == {"unreachable"}


async def test_tcp_across_a_cut_link_is_unreachable(whole_lab: Lab) -> None:
    whole_lab.cut_link("tesko-mpls")
    result = await tcp.probe(Target("10.101.0.21", TcpProbe(port=9100)), timeout=1)
    assert (result.ok, result.error_kind) == (False, "unreachable")
    whole_lab.restore_link("tesko-mpls")
    result = await tcp.probe(Target("10.101.0.21", TcpProbe(port=9100)), timeout=1)
    assert (result.ok, result.error_kind) == (False, "refused")  # the host is back; no server


async def test_the_agent_s_ping_of_a_cut_primary_answers_over_the_backup(whole_lab: Lab) -> None:
    far_primary, far_backup = "10.99.8.1", "10.99.9.1"  # elliotdale's MPLS and wireless
    for address in (far_primary, far_backup, "10.99.0.1"):
        result = probe_from_site(whole_lab, "elliotdale", "icmp", address, "--count", "2")
        assert result["ok"] is True, result
    assert whole_lab.hop_toward("elliotdale") == far_primary
    whole_lab.cut_link("elliotdale-mpls")
    primary = probe_from_site(whole_lab, "elliotdale", "icmp", far_primary, "--timeout", "0.5")
    backup = probe_from_site(whole_lab, "elliotdale", "icmp", far_backup)
    hub = probe_from_site(whole_lab, "elliotdale", "icmp", "10.99.0.1")
    # The far end of the cut primary still answers, over the backup, as a provider edge does:
    # a reachability ping proves nothing about the link. The path names the backup's hop,
    # and the centre's ping of the primary's edge cannot even be sent.
    assert primary["ok"] is True, primary
    assert backup["ok"] is True
    assert hub["ok"] is True  # the site still reaches the collector, over its backup
    assert whole_lab.hop_toward("elliotdale") == far_backup
    edge = await icmp.probe(Target("10.99.8.2", IcmpProbe(count=1)), timeout=0.5)
    assert (edge.ok, edge.error_kind) == (False, "unreachable"), edge.detail


async def test_every_lab_phone_answers_sip_and_goes_silent_behind_a_cut(whole_lab: Lab) -> None:
    phones = [d for d in whole_lab.plan.devices if d.sip_port]
    targets = [
        Target(str(p.address), SipProbe(port=p.sip_port or 5060, transport="udp"), id=p.id)
        for p in phones
    ]
    results = await asyncio.gather(*(sip.probe(t, timeout=2) for t in targets))
    assert [(r.target, r.value.get("status")) for r in results] == [(p.id, 200) for p in phones]
    whole_lab.cut_link("trc-wireless")
    trc_phone = next(t for t in targets if t.id == "trc-phone-01")
    result = await sip.probe(trc_phone, timeout=1)
    assert (result.ok, result.error_kind) == (False, "unreachable")  # the hub's blackhole


async def test_every_lab_printer_read_over_snmp_matches_snmpbulkwalk(whole_lab: Lab) -> None:
    printers = [d for d in whole_lab.plan.devices if d.snmp_community and not d.router]
    credentials = SnmpCredentials("2c", 161, "public", None, None, None, None, None)
    probe = SnmpProbe("printer", credentials, ())
    targets = [Target(str(p.address), probe, id=p.id) for p in printers]
    try:
        results = await asyncio.gather(*(snmp.probe(t, timeout=3) for t in targets))
        for printer, result in zip(printers, results, strict=True):
            assert result.ok, (printer.id, result.detail)
            supplies = result.value["supplies"]
            assert isinstance(supplies, list)
            levels = [entry["level"] for entry in supplies if isinstance(entry, dict)]
            assert levels == levels_by_snmpbulkwalk(str(printer.address)), printer.id
            alerts = [{"severity": "warning", "description": "Cyan toner low"}]
            assert result.value["alerts"] == alerts, printer.id
        whole_lab.cut_link("customer-care-mpls")
        behind = next(t for t, p in zip(targets, printers, strict=True) if p.site == "town-hall")
        dark = await snmp.probe(behind, timeout=1)
        assert (dark.ok, dark.error_kind) == (False, "unreachable"), dark.detail
        assert dark.detail.endswith("no route (blackholed)")  # at once, not after the timeout
    finally:
        snmp.close()


def levels_by_snmpbulkwalk(address: str) -> list[int]:
    """Return prtMarkerSuppliesLevel as net-snmp reads it from the same printer."""
    column = ".1.3.6.1.2.1.43.11.1.1.9."
    walked = subprocess.run(
        ["snmpbulkwalk", "-v2c", "-c", "public", "-Oqn", address, column.strip(".")],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.splitlines()  # fmt: skip
    return [
        int(line.split()[1]) for line in walked if line.startswith(column) and "No " not in line
    ]
