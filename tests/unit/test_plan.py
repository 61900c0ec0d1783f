"""The probe plan's wire form: what the collector builds is what the agent reads back."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from probes.plan import Plan, PlanFormatError, PlanTarget, build_plan, plan_from_json, plan_to_json
from sitewatch.config.files import load_inventory
from sitewatch.config.model import IcmpProbe, InterfaceProbe, PathProbe, SnmpProbe

ROOT = Path(__file__).resolve().parents[2]


def test_every_example_site_plan_survives_the_wire() -> None:
    inventory = load_inventory(ROOT / "config" / "inventory.yaml")
    for site in inventory.sites:
        plan = build_plan(inventory, site.id)
        assert plan_from_json(json.loads(json.dumps(plan_to_json(plan)))) == plan
        ids = {t.id for t in plan.targets}
        assert ids == {link.id for link in site.links if link.probe} | {d.id for d in site.devices}


def test_the_version_changes_with_the_content_only() -> None:
    inventory = load_inventory(ROOT / "config" / "inventory.yaml")
    first = build_plan(inventory, "customer-care")
    assert build_plan(inventory, "customer-care").version == first.version
    assert build_plan(inventory, "town-hall").version != first.version


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("targets",), "all", "targets: must be a list"),
        (("targets", 0, "role"), "router", "targets[0].role: must be link or device"),
        (("targets", 0, "addresses"), [], "targets[0].addresses: must be a list of addresses"),
        (("targets", 0, "interval"), 0, "targets[0].interval: must be between 0 and 86400"),
        (("targets", 0, "spec", "kind"), "ftp", "targets[0].spec.kind: 'ftp' is not a probe kind"),
        (("targets", 0, "spec", "count"), "3", "targets[0].spec.count: must be a whole number"),
        (("version",), None, "version: must be non-empty text"),
    ],
)
def test_a_bad_plan_names_the_field(path: tuple[Any, ...], value: object, message: str) -> None:
    inventory = load_inventory(ROOT / "config" / "inventory.yaml")
    body = copy.deepcopy(plan_to_json(build_plan(inventory, "willowvale")))
    here: Any = body
    for key in path[:-1]:
        here = here[key]
    here[path[-1]] = value
    with pytest.raises(PlanFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan_from_json(body)


# -- a link's evidence: the far-end ping (bound by source/via), its interface, the path -------

WILLOWVALE_HOPS = (("willowvale-mpls", ("10.99.6.1",)), ("willowvale-fibre", ("10.99.7.1",)))


def test_willowvale_plan_probes_each_link_three_ways() -> None:
    inventory = load_inventory(ROOT / "config" / "inventory.yaml")
    plan = build_plan(inventory, "willowvale")
    links = [t for t in plan.targets if t.role == "link"]
    assert [(t.id, t.addresses, t.spec.kind) for t in links] == [
        ("willowvale-mpls", ("10.99.6.1",), "icmp"),
        ("willowvale-mpls", ("10.106.0.1",), "interface"),
        ("willowvale-mpls", ("10.99.0.254",), "path"),
        ("willowvale-fibre", ("10.99.7.1",), "icmp"),
        ("willowvale-fibre", ("10.106.0.1",), "interface"),
        ("willowvale-fibre", ("10.99.0.254",), "path"),
    ]
    assert links[0].spec == IcmpProbe()  # no source or via: a reachability ping
    router = inventory.site("willowvale").devices[0]
    assert router.id == "wv-rtr-01"
    [snmp] = [spec for spec in router.probes if isinstance(spec, SnmpProbe)]
    assert [t.spec for t in links if isinstance(t.spec, InterfaceProbe)] == [
        InterfaceProbe(snmp.credentials, "up0", None),
        InterfaceProbe(snmp.credentials, "up1", None),
    ]
    assert [t.spec for t in links if isinstance(t.spec, PathProbe)] == [
        PathProbe("10.99.0.254", 1, WILLOWVALE_HOPS)
    ] * 2
    assert {(t.interval, t.timeout) for t in links} == {(30.0, 2.0)}


BOUND = """\
organisation: Test Municipality
snmp: {version: 2c, community: site-wide}
sites:
  - id: wv
    name: Willowvale
    users: 5
    path: {toward: 10.99.0.254, ttl: 2}
    links:
      - {id: wv-mpls, kind: mpls, role: primary, to: hub, probe: [10.99.6.1],
         next_hop: [10.99.6.1, 10.99.6.5], interface: {device: wv-rtr, ifindex: 2},
         source: 10.99.6.2}
      - {id: wv-fibre, kind: fibre, role: backup, to: hub, probe: [10.99.7.1],
         via: up1, interface: {device: wv-rtr, ifname: up1}}
    devices:
      - {id: wv-rtr, kind: router, address: 10.106.0.1, probes: [icmp]}
"""


def bound_plan(tmp_path: Path, text: str = BOUND) -> Plan:
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    return build_plan(load_inventory(path), "wv")


def test_a_bound_ping_an_ifindex_and_the_inventory_s_credentials(tmp_path: Path) -> None:
    plan = bound_plan(tmp_path)
    assert isinstance(plan.targets[1].spec, InterfaceProbe)
    inventory_credentials = plan.targets[1].spec.credentials
    assert inventory_credentials.community == "site-wide"  # the router has no snmp probe
    assert [t for t in plan.targets if t.role == "link"] == [
        PlanTarget("wv-mpls", "link", ("10.99.6.1",), IcmpProbe(source="10.99.6.2"), 30.0, 2.0),
        PlanTarget(
            "wv-mpls", "link", ("10.106.0.1",), InterfaceProbe(inventory_credentials, None, 2),
            30.0, 2.0,
        ),
        PlanTarget(
            "wv-mpls", "link", ("10.99.0.254",),
            PathProbe("10.99.0.254", 2, (("wv-mpls", ("10.99.6.1", "10.99.6.5")),)), 30.0, 2.0,
        ),
        PlanTarget("wv-fibre", "link", ("10.99.7.1",), IcmpProbe(via="up1"), 30.0, 2.0),
        PlanTarget(
            "wv-fibre", "link", ("10.106.0.1",), InterfaceProbe(inventory_credentials, "up1", None),
            30.0, 2.0,
        ),
    ]  # fmt: skip
    wire = json.loads(json.dumps(plan_to_json(plan)))
    assert plan_from_json(wire) == plan
    assert wire["targets"][0]["spec"] == {
        "kind": "icmp", "count": 3, "interval": 0.2, "source": "10.99.6.2"
    }  # fmt: skip


def test_an_unbound_ping_keeps_its_old_wire_form() -> None:
    """A plan whose inventory gained no evidence keys keeps its version: agents keep theirs."""
    inventory = load_inventory(ROOT / "config" / "inventory.yaml")
    plan = plan_to_json(build_plan(inventory, "customer-care"))
    assert plan["targets"][0]["spec"] == {"kind": "icmp", "count": 3, "interval": 0.2}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("source: 10.99.6.2", "source: 10.99.6.6"),
        ("via: up1,", "via: up2,"),
        ("ifindex: 2}", "ifindex: 3}"),
        ("ifname: up1}", "ifname: up2}"),
        ("ttl: 2}", "ttl: 3}"),
        ("toward: 10.99.0.254", "toward: 10.99.0.253"),
        ("10.99.6.1, 10.99.6.5]", "10.99.6.1]"),
        ("probes: [icmp]}", "probes: [icmp, snmp], snmp: {community: own}}"),
    ],
)
def test_the_version_changes_with_each_evidence_key(tmp_path: Path, old: str, new: str) -> None:
    assert old in BOUND
    before = bound_plan(tmp_path).version
    assert bound_plan(tmp_path, BOUND.replace(old, new, 1)).version != before


def test_the_router_s_snmp_probe_lends_the_interface_probe_its_credentials(
    tmp_path: Path,
) -> None:
    text = BOUND.replace("probes: [icmp]}", "probes: [icmp, snmp], snmp: {community: own}}")
    plan = bound_plan(tmp_path, text)
    interface = [t.spec for t in plan.targets if isinstance(t.spec, InterfaceProbe)]
    assert [spec.credentials.community for spec in interface] == ["own", "own"]


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ([((1, "ifname"), None)], "targets[1].spec.ifname: give exactly one of ifname and ifindex"),
        ([((1, "ifindex"), 2)], "targets[1].spec.ifname: give exactly one of ifname and ifindex"),
        ([((1, "ifname"), "")], "targets[1].spec.ifname: must be non-empty text or null"),
        ([((1, "ifname"), None), ((1, "ifindex"), 0)],
         "targets[1].spec.ifindex: must be between 1 and 2147483647"),
        ([((1, "ifindex"), True)], "targets[1].spec.ifindex: must be int or null"),
        ([((1, "credentials"), None)], "targets[1].spec.credentials: must be an object"),
        ([((1, "credentials", "version"), "4")],
         "targets[1].spec.credentials.version: must be 1, 2c or 3"),
        ([((2, "ttl"), 0)], "targets[2].spec.ttl: must be between 1 and 30"),
        ([((2, "ttl"), "1")], "targets[2].spec.ttl: must be a whole number"),
        ([((2, "toward"), "core")], "targets[2].spec.toward: 'core' is not an IP address"),
        ([((2, "toward"), None)], "targets[2].spec.toward: must be an IP address"),
        ([((2, "hops"), [])], "targets[2].spec.hops: must be a non-empty list"),
        ([((2, "hops", 0), ["willowvale-mpls"])],
         "targets[2].spec.hops[0]: must be [link id, [address...]]"),
        ([((2, "hops", 0, 0), "")], "targets[2].spec.hops[0][0]: must be a link id"),
        ([((2, "hops", 1, 1), [])],
         "targets[2].spec.hops[1][1]: must be a non-empty list of addresses"),
        ([((2, "hops", 1, 1, 0), "10.99.7")],
         "targets[2].spec.hops[1][1][0]: '10.99.7' is not an IP address"),
        ([((0, "source"), "up0")], "targets[0].spec.source: 'up0' is not an IP address"),
        ([((0, "via"), "eth0/1")], "targets[0].spec.via: 'eth0/1' is not an interface name"),
        ([((0, "via"), 5)], "targets[0].spec.via: must be str or null"),
        # the inventory's one-host rule holds on the wire too: a plan from elsewhere
        ([((0, "source"), "224.0.0.1")],
         "targets[0].spec.source: 224.0.0.1 is not one address of this host"),
        ([((2, "toward"), "224.0.0.1")],
         "targets[2].spec.toward: 224.0.0.1 is not one host to aim at"),
        ([((2, "hops", 1, 1, 0), "10.99.0.254")],
         "targets[2].spec.hops[1][1][0]: 10.99.0.254 cannot answer as a hop"),
        ([((2, "hops", 1, 1, 0), "255.255.255.255")],
         "targets[2].spec.hops[1][1][0]: 255.255.255.255 cannot answer as a hop"),
    ],
)  # fmt: skip
def test_a_bad_evidence_spec_names_the_field(
    edits: list[tuple[tuple[Any, ...], object]], message: str
) -> None:
    inventory = load_inventory(ROOT / "config" / "inventory.yaml")
    body = copy.deepcopy(plan_to_json(build_plan(inventory, "willowvale")))
    assert [t["spec"]["kind"] for t in body["targets"][:3]] == ["icmp", "interface", "path"]
    for (target, *path), value in edits:
        here: Any = body["targets"][target]["spec"]
        for key in path[:-1]:
            here = here[key]
        here[path[-1]] = value
    with pytest.raises(PlanFormatError) as caught:
        plan_from_json(body)
    assert str(caught.value).startswith(message)
