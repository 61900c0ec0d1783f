"""The lab's addressing and routing, computed without touching the host."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from sitewatch.config import load_inventory
from sitewatch.config.model import HUB
from tests.conftest import EXAMPLE_INVENTORY
from tests.deploy import fast_inventory
from tests.lab import Lab
from tests.lab.plan import LabError, Plan, check_safe, compute_routes, make_plan

A = ipaddress.IPv4Address


@pytest.fixture(scope="module")
def plan() -> Plan:
    return make_plan(load_inventory(EXAMPLE_INVENTORY), "swtest")


def all_up(plan: Plan) -> set[str]:
    return {link.id for link in plan.links}


def test_plan_covers_monitored_sites_with_prefixed_names(plan: Plan) -> None:
    assert "dutywa-pound" not in plan.sites
    assert len(plan.sites) == 9
    assert plan.namespace(HUB) is None
    assert plan.namespace("tesko") == f"swtest-{plan.sites.index('tesko')}"
    root_side = [link.parent.interface for link in plan.links if link.parent.node == HUB]
    assert all(name.startswith("swtest") and len(name) <= 15 for name in root_side)
    assert plan.link("town-hall-wireless").parent.node == "customer-care"


def test_blackholed_networks_are_exactly_the_lab_s_24s(plan: Plan) -> None:
    expected = {"10.98.1.0/24", "10.98.2.0/24", "10.98.3.0/24", "10.99.0.0/24"}
    expected |= {f"10.99.{n}.0/24" for n in range(1, 10)} | {f"10.10{n}.0.0/24" for n in range(9)}
    assert {str(n) for n in plan.networks} == expected


def test_hub_reaches_a_chain_through_its_parent(plan: Plan) -> None:
    routes = compute_routes(plan, all_up(plan))
    via, dev = routes[HUB][A("10.102.0.21")]  # town hall's printer
    assert via == A("10.99.3.2")  # customer care's end of its MPLS link
    assert dev == plan.link("customer-care-mpls").parent.interface
    assert routes["town-hall"][A("10.99.0.1")] == (A("10.98.1.1"), "up0")


def test_cutting_the_chain_upstream_leaves_no_route_into_it(plan: Plan) -> None:
    routes = compute_routes(plan, all_up(plan) - {"customer-care-mpls"})
    for address in ("10.103.0.21", "10.102.0.21", "10.98.1.2"):
        assert A(address) not in routes[HUB]
    assert A("10.99.3.2") not in routes[HUB]  # the dead link's ends answer nobody
    assert A("10.99.0.1") not in routes["town-hall"]


def test_primary_is_preferred_and_backup_takes_over(plan: Plan) -> None:
    up = all_up(plan)
    mpls, fibre = plan.link("willowvale-mpls"), plan.link("willowvale-fibre")
    assert compute_routes(plan, up)[HUB][A("10.106.0.21")][1] == mpls.parent.interface
    routes = compute_routes(plan, up - {"willowvale-mpls"})
    assert routes[HUB][A("10.106.0.21")] == (fibre.child.address, fibre.parent.interface)
    assert A("10.99.7.1") not in routes["willowvale"]  # connected: the kernel routes it


def test_a_cut_primary_s_far_end_answers_over_the_backup_but_its_edge_does_not(
    plan: Plan,
) -> None:
    # What fools a reachability ping: the provider edge of a cut link is still reachable
    # from the site, over its backup; only the site's own end of the cut link goes dark.
    routes = compute_routes(plan, all_up(plan) - {"willowvale-mpls"})
    assert routes["willowvale"][A("10.99.6.1")] == (A("10.99.7.1"), "up1")
    assert A("10.99.6.2") not in routes[HUB]  # the edge: the hub's blackhole answers
    assert A("10.99.6.1") not in routes[HUB]  # the hub's own address, on its down veth
    assert routes["tesko"][A("10.99.6.1")] == (A("10.99.2.1"), "up0")  # reached at the hub
    both = compute_routes(plan, all_up(plan) - {"willowvale-mpls", "willowvale-fibre"})
    assert A("10.99.6.1") not in both["willowvale"]  # no path left: nothing answers
    assert A("10.99.0.1") not in both["willowvale"]


def test_the_hub_s_second_address_is_reached_as_its_first(plan: Plan) -> None:
    """A second collector listens there: each site reaches it over the path to the first."""
    assert plan.standby_address == A("10.99.0.2")
    for cut in (set(), {"willowvale-mpls"}, {"customer-care-mpls"}):
        routes = compute_routes(plan, all_up(plan) - cut)
        for site in plan.sites:
            assert routes[site].get(plan.standby_address) == routes[site].get(plan.hub_address)
            assert cut or plan.standby_address in routes[site]  # all up: every site reaches it
    assert any(plan.standby_address in network for network in plan.networks)  # blackholed


def test_sites_reach_the_core_through_their_first_hop_toward_the_hub(plan: Plan) -> None:
    core = plan.core_address
    assert core == A("10.99.0.254")
    routes = compute_routes(plan, all_up(plan))
    assert routes["willowvale"][core] == (A("10.99.6.1"), "up0")  # over the primary
    assert routes["town-hall"][core] == (A("10.98.1.1"), "up0")  # through customer care
    assert routes["customer-care"][core] == (A("10.99.3.1"), "up0")
    assert core not in routes[HUB]  # the hub's route to the core is the core veth's, not ours
    failed_over = compute_routes(plan, all_up(plan) - {"willowvale-mpls"})
    assert failed_over["willowvale"][core] == (A("10.99.7.1"), "up1")  # over the backup
    chain_cut = compute_routes(plan, all_up(plan) - {"customer-care-mpls"})
    assert core not in chain_cut["town-hall"]
    assert core not in chain_cut["customer-care"]


@pytest.mark.parametrize(
    "cut", [set(), {"willowvale-mpls"}, {"customer-care-mpls"}, {"dutywa-main-mpls"}]
)
def test_the_hub_never_carries_traffic_between_sites(plan: Plan, cut: set[str]) -> None:
    routes = compute_routes(plan, all_up(plan) - cut)
    assert A("10.106.0.21") not in routes["tesko"]  # tesko to willowvale would cross the hub
    hub_ends = {link.parent.address for link in plan.links if link.parent.node == HUB}
    hub_owned = {plan.hub_address, plan.standby_address, plan.core_address, *hub_ends}
    for site in plan.sites:
        for destination, (via, _) in routes[site].items():
            if via in hub_ends:  # sent to the hub: only for the hub itself or the core
                assert destination in hub_owned, (site, destination)


def test_the_core_sits_in_a_blackholed_range_and_only_hub_veths_forward(plan: Plan) -> None:
    assert any(plan.core_address in network for network in plan.networks)
    assert plan.core_namespace == "swtest-core"
    forwarding = set(plan.hub_interfaces)
    hub_ends = {link.parent.interface for link in plan.links if link.parent.node == HUB}
    assert forwarding == hub_ends | {"swtest" + "c"}
    assert all(name.startswith("swtest") and len(name) <= 15 for name in forwarding)
    assert "dn1" not in forwarding  # a parent site's end lives in its namespace, not the host


def test_the_core_address_is_checked_like_any_other(tmp_path: Path) -> None:
    inventory = load_inventory(EXAMPLE_INVENTORY)
    with pytest.raises(LabError, match=r"8\.8\.8\.0/24 is not a private range"):
        make_plan(inventory, "swtest", core_address="8.8.8.8")
    with pytest.raises(LabError, match=r"10\.101\.0\.21 is used twice"):
        make_plan(inventory, "swtest", core_address="10.101.0.21")
    with pytest.raises(LabError, match="the core address: the lab needs IPv4"):
        make_plan(inventory, "swtest", core_address="core")
    moved = make_plan(inventory, "swtest", core_address="10.97.0.254")
    assert ipaddress.IPv4Network("10.97.0.0/24") in moved.networks  # blackholed too


def test_routers_are_answered_by_snmpd_and_printers_by_snmpsim(tmp_path: Path) -> None:
    text = EXAMPLE_INVENTORY.read_text()
    router = (
        "      - {id: ts-rtr-09, kind: router, address: 10.101.0.9, snmp: {community: wan-ro},\n"
        "         probes: [icmp, {kind: snmp, profile: interface}]}\n"
    )
    anchor = "      - {id: ts-prn-01,"
    assert anchor in text
    with_router = tmp_path / "router.yaml"
    with_router.write_text(text.replace(anchor, router + anchor))
    plan = make_plan(load_inventory(with_router), "swtest")
    found = plan.device("ts-rtr-09")
    assert (found.router, found.snmp_community, found.site) == (True, "wan-ro", "tesko")
    printer = plan.device("ts-prn-01")
    assert (printer.router, printer.snmp_community) == (False, "public")


@pytest.mark.parametrize(
    ("taken", "routes", "message"),
    [
        ([A("10.99.0.53")], [], "10.99.0.0/24 holds 10.99.0.53"),
        ([], ["10.100.0.0/16"], "10.100.0.0/24 overlaps the host's route to 10.100.0.0/16"),
    ],
)
def test_ranges_holding_the_resolver_or_host_routes_are_refused(
    plan: Plan, taken: list[ipaddress.IPv4Address], routes: list[str], message: str
) -> None:
    with pytest.raises(LabError, match=message.replace(".", r"\.")):
        check_safe(plan, taken, routes)
    check_safe(plan, [A("10.255.255.53"), A("192.0.2.2")], ["192.0.2.0/24"])  # this machine


def test_public_and_badly_paired_addresses_are_refused(tmp_path: Path) -> None:
    text = EXAMPLE_INVENTORY.read_text()
    public = tmp_path / "public.yaml"
    public.write_text(text.replace("10.101.0.21", "8.8.8.8"))
    with pytest.raises(LabError, match=r"8\.8\.8\.0/24 is not a private range"):
        make_plan(load_inventory(public), "swtest")
    apart = tmp_path / "apart.yaml"
    apart.write_text(text.replace("edge: 10.99.2.2", "edge: 10.99.12.2"))
    with pytest.raises(LabError, match=r"tesko-mpls: probe 10\.99\.2\.1 and edge 10\.99\.12\.2"):
        make_plan(load_inventory(apart), "swtest")


def test_a_site_with_a_router_sends_from_its_address(plan: Plan) -> None:
    # so that the agent's connection to the collector survives a failover, as from a LAN
    assert plan.source("willowvale") == A("10.106.0.1")
    assert plan.source("tesko") is None  # no router: from the address of the link it takes
    assert plan.source(HUB) is None


def test_the_fast_example_inventory_is_written_only_for_a_lab_that_is_up(tmp_path: Path) -> None:
    """Its collector pings every edge: without the lab's blackholes they would leave the host."""
    lab = Lab(EXAMPLE_INVENTORY)  # planned, never built
    try:
        with pytest.raises(LabError, match="safe only with its lab up"):
            fast_inventory(tmp_path, lab)
        assert not (tmp_path / "inventory.yaml").exists()
    finally:
        lab.down()
