"""The lab's plan: which namespaces, links, addresses and routes an inventory becomes.

Pure functions, no side effects, so the routing and the safety rules are unit-tested without
root. The root namespace is the hub. Each link is a veth pair: the parent's end (the hub, or the
site the link leads to) holds `probe[0]`, the site's end holds `edge`. Routes are recomputed
from the links that are up, as a routing protocol would converge: shortest paths, primary links
preferred, and never through the hub, which does not forward between sites.

A cut link's parent end stays reachable over any other path, as a provider edge or a hub
address is in a real network: that is what fools a reachability ping from the site. Its site
end (`edge`) is routed only over the link, so the centre's ping of it fails while it is cut.
Behind the hub sits a `core` namespace holding `core_address`, the target of the agents' path
probes: every site routes it through its current first hop toward the hub, so a TTL-1 echo
toward it is answered "time exceeded" by the hub end of the link in use. A site with a router
sends its traffic from the router's address (`Plan.source`), so a failover moves its
connections to the backup instead of stranding them on the cut link's address.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sitewatch.config.model import HUB, Inventory, SipProbe, SnmpProbe

PRIVATE = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
BACKUP_COST = 10  # a backup link is used only when no primary path is left


class LabError(Exception):
    """The lab cannot be built as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class End:
    """One end of a link: the node it sits in and its interface and address there."""

    node: str  # HUB or a site id
    interface: str
    address: ipaddress.IPv4Address
    network: ipaddress.IPv4Network


@dataclass(frozen=True, slots=True)
class LinkPlan:
    """A link as a veth pair."""

    id: str
    role: str
    parent: End
    child: End

    def end_in(self, node: str) -> End:
        return self.parent if self.parent.node == node else self.child

    def other_end(self, node: str) -> End:
        return self.child if self.parent.node == node else self.parent


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """A device address inside its site, with what must answer there."""

    id: str
    site: str
    address: ipaddress.IPv4Address
    snmp_community: str | None  # snmpsim answers SNMP here (net-snmp's snmpd for a router)
    sip_port: int | None  # a phone answered by sipp
    router: bool = False  # a real snmpd whose IF-MIB lists the site's own interfaces


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything the lab builds, named with its prefix."""

    prefix: str
    hub_address: ipaddress.IPv4Address
    sites: tuple[str, ...]  # monitored site ids, in inventory order
    links: tuple[LinkPlan, ...]
    devices: tuple[DevicePlan, ...]
    networks: tuple[ipaddress.IPv4Network, ...]  # the /24s blackholed for safety
    core_address: ipaddress.IPv4Address  # in the core namespace, behind the hub
    standby_address: ipaddress.IPv4Address  # the hub's second address: a second collector's

    def namespace(self, node: str) -> str | None:
        """Return the namespace of a site, or None for the hub (the root namespace)."""
        if node == HUB:
            return None
        return f"{self.prefix}-{self.sites.index(node)}"

    def source(self, node: str) -> ipaddress.IPv4Address | None:
        """Return the address a site's own traffic leaves from: its (first) router's.

        As on a real network, where a site's traffic comes from its LAN whichever WAN link
        carries it: a connection (the agent's to the collector) outlives a failover. Without
        a router, traffic leaves from the address of the link it takes.
        """
        return next((d.address for d in self.devices if d.site == node and d.router), None)

    @property
    def core_namespace(self) -> str:
        """Return the namespace behind the hub that holds the core address."""
        return f"{self.prefix}-core"

    @property
    def core_interface(self) -> str:
        """Return the hub's (root-side) end of the veth to the core; it carries the prefix."""
        return f"{self.prefix}c"

    @property
    def hub_interfaces(self) -> tuple[str, ...]:
        """Return the hub's lab veths: the only interfaces of the host that forward."""
        ends = (link.parent for link in self.links if link.parent.node == HUB)
        return (*(end.interface for end in ends), self.core_interface)

    def link(self, link_id: str) -> LinkPlan:
        for link in self.links:
            if link.id == link_id:
                return link
        raise LabError(f"no link {link_id!r} in the lab")

    def device(self, device_id: str) -> DevicePlan:
        for device in self.devices:
            if device.id == device_id:
                return device
        raise LabError(f"no device {device_id!r} in the lab")


Route = tuple[ipaddress.IPv4Address, str]  # (via, dev)
Routes = dict[str, dict[ipaddress.IPv4Address, Route]]  # node -> destination -> next hop


def make_plan(
    inventory: Inventory,
    prefix: str,
    hub_address: str = "10.99.0.1",
    core_address: str = "10.99.0.254",
) -> Plan:
    """Return the plan for the monitored sites of `inventory`, or raise LabError."""
    hub = _ipv4(hub_address, "the hub address")
    core = _ipv4(core_address, "the core address")
    standby = hub + 1  # the hub's second address, for a second collector
    sites = tuple(site.id for site in inventory.sites if site.monitored)
    links: list[LinkPlan] = []
    devices: list[DevicePlan] = []
    for site in inventory.sites:
        if not site.monitored:
            continue
        for index, link in enumerate(site.links):
            if not link.probe or link.edge is None:
                raise LabError(f"link {link.id}: the lab needs both probe and edge addresses")
            far, near = _ipv4(str(link.probe[0]), link.id), _ipv4(str(link.edge), link.id)
            network = _common_network(far, near, link.id)
            number = len(links)
            parent_interface = (
                f"{prefix}h{number}" if link.to == HUB else f"dn{number}"
            )  # root-side names must be unique on the host, so they carry the prefix
            links.append(
                LinkPlan(
                    id=link.id,
                    role=link.role,
                    parent=End(link.to, parent_interface, far, network),
                    child=End(site.id, f"up{index}", near, network),
                )
            )
        for device in site.devices:
            community = next(
                (p.credentials.community for p in device.probes if isinstance(p, SnmpProbe)),
                None,
            )
            sip_port = next((p.port for p in device.probes if isinstance(p, SipProbe)), None)
            address = _ipv4(device.address, device.id)
            router = device.kind == "router"
            devices.append(DevicePlan(device.id, site.id, address, community, sip_port, router))
    ends = (end.address for link in links for end in (link.parent, link.child))
    addresses = [hub, standby, core, *ends]
    addresses += [d.address for d in devices]
    _check_unique(addresses)
    networks = tuple(sorted({ipaddress.IPv4Network(f"{a}/24", strict=False) for a in addresses}))
    for network in networks:
        if not any(network.subnet_of(private) for private in PRIVATE):
            raise LabError(f"{network} is not a private range: the lab refuses to use it")
    return Plan(prefix, hub, sites, tuple(links), tuple(devices), networks, core, standby)


def check_safe(
    plan: Plan, taken: Iterable[ipaddress.IPv4Address], host_networks: Iterable[str]
) -> None:
    """Refuse lab ranges that hold the resolver or the host's addresses, or overlap its routes.

    A blackhole over the resolver's range silently breaks name resolution for the whole
    machine, and an address already in use means another lab (or the host) owns it.
    """
    for address in taken:
        for network in plan.networks:
            if address in network:
                raise LabError(
                    f"{network} holds {address}, an address of this host or its resolver: "
                    "choose lab addresses elsewhere"
                )
    for text in host_networks:
        host_network = ipaddress.ip_network(text, strict=False)
        if not isinstance(host_network, ipaddress.IPv4Network) or host_network.prefixlen == 0:
            continue
        for network in plan.networks:
            if network.overlaps(host_network):
                raise LabError(f"{network} overlaps the host's route to {host_network}")


def compute_routes(plan: Plan, up: Iterable[str]) -> Routes:
    """Return, for the hub and every site, its next hop to every destination it can reach.

    Destinations are the hub's two addresses and the core address, every device, the parent end
    of every link and the site end of every link that is up. A cut link's parent end (a provider
    edge, a hub address) stays reachable over any other path, as on a real network; its site end
    is reachable only over the link itself, so it answers nobody while the link is down. A node
    needs no route to an address on an up link it is itself attached to: the kernel's connected
    route covers that. The hub gets no route to the core here (the lab adds it once,
    through the core's veth); the sites reach the core through their first hop to the hub.
    """
    up_links = [link for link in plan.links if link.id in set(up)]
    owners = dict.fromkeys((plan.hub_address, plan.standby_address, plan.core_address), HUB)
    owners |= {device.address: device.site for device in plan.devices}
    owners |= {link.parent.address: link.parent.node for link in plan.links}
    for link in up_links:
        owners[link.child.address] = link.child.node
    adjacency: dict[str, list[LinkPlan]] = {}
    for link in up_links:
        adjacency.setdefault(link.parent.node, []).append(link)
        adjacency.setdefault(link.child.node, []).append(link)
    routes: Routes = {}
    for node in (HUB, *plan.sites):
        first_hops = _first_hops(node, adjacency)
        attached = {link.end_in(node).network for link in adjacency.get(node, [])}
        table: dict[ipaddress.IPv4Address, Route] = {}
        for destination, owner in owners.items():
            if owner == node or any(destination in network for network in attached):
                continue
            hop = first_hops.get(owner)
            if hop is not None:
                table[destination] = (hop.other_end(node).address, hop.end_in(node).interface)
        routes[node] = table
    return routes


def _first_hops(source: str, adjacency: Mapping[str, list[LinkPlan]]) -> dict[str, LinkPlan]:
    """Return, for each node reachable from `source`, the first link of the cheapest path."""
    best: dict[str, int] = {source: 0}
    first: dict[str, LinkPlan] = {}
    queue: list[tuple[int, str, str]] = [(0, source, "")]
    while queue:
        cost, node, _ = heapq.heappop(queue)
        if cost > best.get(node, cost):
            continue
        if node == HUB and node != source:
            continue  # the hub ends paths; it does not forward between sites
        for link in sorted(adjacency.get(node, []), key=lambda candidate: candidate.id):
            neighbour = link.other_end(node).node
            step = cost + (BACKUP_COST if link.role == "backup" else 1)
            if step < best.get(neighbour, step + 1):
                best[neighbour] = step
                first[neighbour] = first.get(node, link) if node != source else link
                heapq.heappush(queue, (step, neighbour, link.id))
    return first


def _ipv4(text: str, what: str) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise LabError(f"{what}: the lab needs IPv4 addresses, not {text!r}") from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise LabError(f"{what}: the lab builds IPv4 only, not {text}")
    return address


def _common_network(
    far: ipaddress.IPv4Address, near: ipaddress.IPv4Address, link_id: str
) -> ipaddress.IPv4Network:
    """Return the smallest network holding both ends as usable host addresses."""
    for length in range(30, 23, -1):
        network = ipaddress.IPv4Network(f"{far}/{length}", strict=False)
        usable = near in network and far != near
        if (
            usable
            and far not in (network.network_address, network.broadcast_address)
            and (near not in (network.network_address, network.broadcast_address))
        ):
            return network
    raise LabError(f"link {link_id}: probe {far} and edge {near} are not within one /24")


def _check_unique(addresses: list[ipaddress.IPv4Address]) -> None:
    seen: set[ipaddress.IPv4Address] = set()
    for address in addresses:
        if address in seen:
            raise LabError(f"{address} is used twice in the lab")
        seen.add(address)
