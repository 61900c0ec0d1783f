"""The lab's addressing and routing, computed without touching the host."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from sitewatch.config import load_inventory
from sitewatch.config.model import HUB
from tests.conftest import EXAMPLE_INVENTORY
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
    assert A("10.99.6.1") not in routes["willowvale"]  # the primary's far end is dark
    assert A("10.99.7.1") not in routes["willowvale"]  # connected: the kernel routes it


def test_the_hub_never_carries_traffic_between_sites(plan: Plan) -> None:
    routes = compute_routes(plan, all_up(plan))
    assert A("10.106.0.21") not in routes["tesko"]  # tesko to willowvale would cross the hub


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
