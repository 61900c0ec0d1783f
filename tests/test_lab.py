"""The lab itself: devices answer, chains go dark together, backups carry a site.

A cut link's far end (the hub's end) stays reachable over the site's backup, as a provider
edge does in a real network; only the site's end of the cut link (its edge) goes dark, and a
TTL-1 echo toward the core names the hub end of the link in use.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from probes import icmp
from probes.target import Target
from sitewatch.config.model import IcmpProbe
from tests.lab import Lab, wait_until
from tests.lab.lab import IFTABLE_CACHE_TIMEOUT

pytestmark = pytest.mark.lab
IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
HOST_IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()  # before any lab


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
    printers = [d for d in plan.devices if d.snmp_community and not d.router]
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
    far_ends = ["10.99.6.1", "10.99.7.1", "10.99.0.1", "10.99.0.254"]  # hub ends, hub, core
    assert whole_lab.hop_toward("willowvale") == "10.99.6.1"  # traffic over the MPLS
    whole_lab.cut_link("willowvale-mpls")
    assert reachable(devices) == set(devices)
    assert reachable(["10.99.6.2", "10.99.7.2"]) == {"10.99.7.2"}  # the cut edge is dark
    # The agent's view: every far end answers, the cut primary's too (over the backup), so
    # a ping of it proves nothing about the link; the path toward the core names the fibre.
    assert reachable(far_ends, lab=whole_lab, site="willowvale") == set(far_ends)
    assert whole_lab.hop_toward("willowvale") == "10.99.7.1"
    whole_lab.cut_link("willowvale-fibre")
    assert reachable(far_ends, lab=whole_lab, site="willowvale") == set()
    assert whole_lab.hop_toward("willowvale") is None
    assert reachable(devices) == set()


def test_a_restored_primary_carries_the_traffic_again(whole_lab: Lab) -> None:
    whole_lab.cut_link("willowvale-mpls")
    assert whole_lab.hop_toward("willowvale") == "10.99.7.1"
    whole_lab.restore_link("willowvale-mpls")
    assert whole_lab.hop_toward("willowvale") == "10.99.6.1"
    assert reachable(["10.99.6.2"]) == {"10.99.6.2"}
    # no route left over from the failover: the far end is on the link again, not behind it
    route = whole_lab.exec_in("willowvale", ["ip", "route", "get", "10.99.6.1"]).stdout
    assert " dev up0 " in route, route
    assert " via " not in route, route


def test_only_the_hub_s_lab_veths_forward(whole_lab: Lab) -> None:
    plan = whole_lab.plan
    conf = Path("/proc/sys/net/ipv4/conf")
    forwarding = {
        path.name
        for path in conf.iterdir()
        if path.name.startswith(plan.prefix) and (path / "forwarding").read_text().strip() == "1"
    }
    assert forwarding == set(plan.hub_interfaces)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == HOST_IP_FORWARD
    # the core answers the sites' echoes through the hub, and hands back only lab networks
    assert reachable(["10.99.0.254"], lab=whole_lab, site="town-hall") == {"10.99.0.254"}
    core_routes = subprocess.run(
        ["ip", "-n", plan.core_namespace, "route"], capture_output=True, text=True, check=True
    ).stdout
    assert "default" not in core_routes


def test_a_router_answers_with_its_site_s_own_interfaces(whole_lab: Lab) -> None:
    routers = [d for d in whole_lab.plan.devices if d.router and d.site == "willowvale"]
    assert [r.id for r in routers] == ["wv-rtr-01"]
    router = routers[0]
    address, community = str(router.address), str(router.snmp_community)

    def walk(column: str) -> dict[str, str]:
        done = whole_lab.exec_in(  # read from inside the site, where its agent reads it
            "willowvale", ["snmpbulkwalk", "-v2c", "-c", community, "-Oqn", address, column]
        )
        assert done.returncode == 0, done.stderr
        rows = (line.split(maxsplit=1) for line in done.stdout.splitlines())
        return {oid.rsplit(".", 1)[1]: value.strip('"') for oid, value in rows}

    names = walk(IF_NAME)
    index = {name: ifindex for ifindex, name in names.items()}
    assert {"lo", "up0", "up1"} <= set(index), names
    cache = whole_lab.exec_in(
        "willowvale", ["snmpget", "-v2c", "-c", community, "-Oqv", address, IFTABLE_CACHE_TIMEOUT]
    )
    assert cache.stdout.strip() == "1"  # seconds: a cut shows within one
    # up (waited for: a test before may have restored the link less than a cache ago)
    wait_until(lambda: walk(IF_OPER_STATUS)[index["up0"]] == "1", 5, "up0 read as up")
    whole_lab.cut_link("willowvale-mpls")
    wait_until(lambda: walk(IF_OPER_STATUS)[index["up0"]] == "2", 5, "up0 read as down")
    assert walk(IF_OPER_STATUS)[index["up1"]] == "1"
    assert Lab.snmp_answers(address, community)  # from the centre too, over the backup


async def test_a_removed_device_times_out_and_comes_back(whole_lab: Lab) -> None:
    target = Target("10.101.0.21", IcmpProbe(count=1), id="ts-prn-01")
    whole_lab.remove_device("ts-prn-01")
    gone = await icmp.probe(target, timeout=0.5)
    assert (gone.ok, gone.error_kind) == (False, "timeout")  # silence, not "unreachable"
    whole_lab.restore_device("ts-prn-01")
    back = await icmp.probe(target, timeout=0.5)
    assert back.ok, back.detail
