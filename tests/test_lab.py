"""The lab itself: devices answer, chains go dark together, backups carry a site."""

from __future__ import annotations

import subprocess

import pytest

from probes import icmp
from probes.target import Target
from sitewatch.config.model import IcmpProbe
from tests.lab import Lab

pytestmark = pytest.mark.lab


def reachable(addresses: list[str], *, lab: Lab | None = None, site: str = "") -> set[str]:
    """Return which addresses answer ping, from the hub or from inside a site."""
    argv = ["fping", "-a", "-r1", "-t300", *addresses]
    done = (
        lab.exec_in(site, argv)
        if lab and site
        else subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    )
    return set(done.stdout.split())


def addresses_of(lab: Lab, *sites: str) -> list[str]:
    """Return the device addresses and link edges of some sites."""
    plan = lab.plan
    found = [str(d.address) for d in plan.devices if d.site in sites]
    found += [str(link.child.address) for link in plan.links if link.child.node in sites]
    return found


def test_every_device_answers_ping_snmp_and_sip(whole_lab: Lab) -> None:
    plan = whole_lab.plan
    everything = [str(d.address) for d in plan.devices] + addresses_of(whole_lab, *plan.sites)
    assert reachable(everything) == set(everything)
    printers = [d for d in plan.devices if d.snmp_community]
    phones = [d for d in plan.devices if d.sip_port]
    assert len(printers) >= 9
    assert len(phones) >= 9
    for printer in printers:
        done = subprocess.run(
            [
                "snmpget",
                "-v2c",
                "-c",
                "public",
                "-Oqv",
                str(printer.address),
                "1.3.6.1.2.1.1.5.0",
                "1.3.6.1.2.1.43.11.1.1.9.1.2",
                "1.3.6.1.2.1.25.3.5.1.1.1",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert done.returncode == 0, (printer.id, done.stderr)
        assert done.stdout.split() == [f'"{printer.site}-printer"', "240", "3"], printer.id
    for phone in phones:
        assert whole_lab.sip_answers(str(phone.address), phone.sip_port or 5060), phone.id


def test_cutting_a_chain_upstream_darkens_the_whole_chain(whole_lab: Lab) -> None:
    chain = addresses_of(whole_lab, "customer-care", "town-hall")
    others = addresses_of(whole_lab, "tesko", "dutywa-main", "dutywa-trc")
    whole_lab.cut_link("customer-care-mpls")
    assert reachable(chain + others) == set(others)
    whole_lab.restore_link("customer-care-mpls")
    assert reachable(chain + others) == set(chain + others)


def test_a_site_with_a_backup_stays_reachable_when_its_primary_is_cut(whole_lab: Lab) -> None:
    devices = [str(d.address) for d in whole_lab.plan.devices if d.site == "willowvale"]
    whole_lab.cut_link("willowvale-mpls")
    assert reachable(devices) == set(devices)
    assert reachable(["10.99.6.2", "10.99.7.2"]) == {"10.99.7.2"}  # the cut edge is dark
    inside = reachable(["10.99.6.1", "10.99.7.1", "10.99.0.1"], lab=whole_lab, site="willowvale")
    assert inside == {"10.99.7.1", "10.99.0.1"}  # the agent's view: primary down, hub there


async def test_a_removed_device_times_out_and_comes_back(whole_lab: Lab) -> None:
    target = Target("10.101.0.21", IcmpProbe(count=1), id="ts-prn-01")
    whole_lab.remove_device("ts-prn-01")
    gone = await icmp.probe(target, timeout=0.5)
    assert (gone.ok, gone.error_kind) == (False, "timeout")  # silence, not "unreachable"
    whole_lab.restore_device("ts-prn-01")
    back = await icmp.probe(target, timeout=0.5)
    assert back.ok, back.detail
