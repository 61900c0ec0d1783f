"""Root cause: from the states of links, devices and agents to the causes worth an incident.

The inventory is a graph: the hub and the sites are nodes, links are edges (a link joins its own
site to its `to`, the hub or a parent site). A correlation pass first finds what still reaches
the hub: the hub itself and every site whose agent is heard (its results had to travel some
path), then everything joined to those by working links. What is left is cut off. Each group of
cut-off sites is one outage, caused by the failed links on its boundary with the reachable part
(a chain's upstream link, never the child's own link, whose far end sits inside the cut). Only
then are the reachable sites looked at: a failed primary with the site still reachable means it
runs on its backup; a degraded link is a P2; a silent agent of a site whose edge answers from
the centre is a dead agent, not an outage; devices count only where the agent can see them.

A pass is pure: evidence and maintenance in, statuses and causes out. The incident book turns
causes into incidents; this module knows nothing of time beyond what the evidence says.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sitewatch.config.model import HUB, Inventory, Link, Site

Priority = Literal["P1", "P2", "P3"]
CauseKind = Literal["link", "site", "device", "devices", "agent"]
LinkStatus = Literal["up", "degraded", "down", "unknown"]
SiteStatus = Literal["up", "degraded", "down", "unknown", "maintenance", "unmonitored"]
Scope = Literal["site", "link", "device"]
Maintained = Container[tuple[str, str]]  # (scope, id) of everything in a maintenance window
PRIORITY_ORDER: tuple[Priority, ...] = ("P1", "P2", "P3")


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the state book knows at one instant, reduced to what correlation needs."""

    links: Mapping[str, LinkStatus]  # every link id; "unknown" without evidence
    agents_alive: Mapping[str, bool]  # site id -> its agent is heard; absent: no agent counts
    devices_down: Mapping[str, frozenset[str]]  # site id -> its devices that are down
    # link id -> each source's word about it ("centre-ping down: 10.99.6.2: cannot send"),
    # for the links that are down or degraded: a link's cause carries them as `evidence`
    notes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Cause:
    """One thing that is wrong, as an incident would name it."""

    key: str
    kind: CauseKind
    priority: Priority
    title: str
    sites: tuple[str, ...]
    affected_users: int
    detail: Mapping[str, Any]  # JSON-ready facts: the failed links, the devices, the agent
    covers: frozenset[str] = frozenset()  # keys of lesser causes this one explains

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.detail}


@dataclass(frozen=True, slots=True)
class Correlation:
    """The outcome of one pass."""

    causes: tuple[Cause, ...]
    sites: Mapping[str, SiteStatus]
    links: Mapping[str, LinkStatus | Literal["maintenance"]]
    unreachable: frozenset[str]  # devices behind a cut: no incident of their own
    maintained_devices: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Edge:
    link: Link
    site: str  # the site the link belongs to
    far: str  # HUB or the site it reaches the network through


@dataclass
class Topology:
    """The inventory's graph and counts, built once per inventory."""

    inventory: Inventory
    sites: dict[str, Site] = field(init=False)
    edges: dict[str, _Edge] = field(init=False)  # by link id
    adjacent: dict[str, list[_Edge]] = field(init=False)  # node -> edges touching it
    agents: dict[str, str] = field(init=False)  # site id -> the agent id named in incidents
    kinds: dict[str, dict[str, tuple[str, ...]]] = field(init=False)  # site -> kind -> devices
    device_site: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        monitored = [site for site in self.inventory.sites if site.monitored]
        self.sites = {site.id: site for site in monitored}
        self.edges, self.adjacent = {}, defaultdict(list)
        for site in monitored:
            for link in site.links:
                if link.to != HUB and link.to not in self.sites:
                    continue  # leads to an unmonitored site: nothing to reason with
                edge = _Edge(link, site.id, link.to)
                self.edges[link.id] = edge
                self.adjacent[site.id].append(edge)
                self.adjacent[link.to].append(edge)
        self.agents = {}
        self.kinds = {}
        self.device_site = {}
        for site in monitored:
            by_kind: dict[str, list[str]] = defaultdict(list)
            for device in site.devices:
                by_kind[device.kind].append(device.id)
                self.device_site[device.id] = site.id
            self.kinds[site.id] = {kind: tuple(ids) for kind, ids in by_kind.items()}

    def with_agents(self, agents: Iterable[tuple[str, str]]) -> Topology:
        """Name each site's agent (agent id, site id); the first configured one per site wins."""
        for agent, site in agents:
            self.agents.setdefault(site, agent)
        return self

    def keys_of(self, site_id: str) -> set[str]:
        """The incident keys of a site and what is in it: itself, its agent, its devices and
        groups of devices (not its links: which of them a cut explains depends on the cut)."""
        keys = {f"site:{site_id}"}
        if site_id in self.agents:
            keys.add(f"agent:{self.agents[site_id]}")
        keys.update(f"devices:{site_id}:{kind}" for kind in self.kinds[site_id])
        keys.update(f"device:{d.id}" for d in self.sites[site_id].devices)
        return keys


def correlate(topology: Topology, evidence: Evidence, maintained: Maintained) -> Correlation:
    """Run one correlation pass."""
    return _Pass(topology, evidence, maintained).run()


@dataclass
class _Pass:
    topology: Topology
    evidence: Evidence
    maintained: Maintained
    causes: list[Cause] = field(default_factory=list)
    sites: dict[str, SiteStatus] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)
    explained_links: set[str] = field(default_factory=set)

    def run(self) -> Correlation:
        topo = self.topology
        reached = self._reachable()
        for group in self._groups(set(topo.sites) - reached):
            self._cut_off(group, reached)
        for site_id in topo.sites:
            if site_id in reached:
                self._reached(topo.sites[site_id])
        for site in self.topology.inventory.sites:
            if not site.monitored:
                self.sites[site.id] = "unmonitored"
        links: dict[str, LinkStatus | Literal["maintenance"]] = {
            link_id: "maintenance" if self._in("link", link_id) else status
            for link_id, status in self.evidence.links.items()
        }
        maintained_devices = frozenset(
            device
            for device, site in topo.device_site.items()
            if self._in("device", device) or self.sites.get(site) == "maintenance"
        )
        return Correlation(
            tuple(sorted(self.causes, key=lambda c: (PRIORITY_ORDER.index(c.priority), c.key))),
            self.sites,
            links,
            frozenset(self.unreachable),
            maintained_devices,
        )

    # -- reachability ---------------------------------------------------------------------

    def _working(self, link_id: str) -> bool:
        return self.evidence.links.get(link_id, "unknown") in ("up", "degraded")

    def _reachable(self) -> set[str]:
        """Return the sites joined to the hub, from it and every heard agent, by working links."""
        topo = self.topology
        seeds = [HUB, *(s for s, alive in self.evidence.agents_alive.items() if alive)]
        seen = {node for node in seeds if node == HUB or node in topo.sites}
        stack = list(seen)
        while stack:
            node = stack.pop()
            for edge in topo.adjacent.get(node, ()):
                if not self._working(edge.link.id):
                    continue
                other = edge.far if edge.site == node else edge.site
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        seen.discard(HUB)
        return seen

    def _groups(self, cut: set[str]) -> list[list[str]]:
        """Split the cut-off sites into groups joined by links of any state, in inventory order."""
        order = {site_id: n for n, site_id in enumerate(self.topology.sites)}
        groups: list[list[str]] = []
        left = set(cut)
        for start in sorted(cut, key=order.__getitem__):
            if start not in left:
                continue
            left.discard(start)
            group, stack = [start], [start]
            while stack:
                node = stack.pop()
                for edge in self.topology.adjacent.get(node, ()):
                    other = edge.far if edge.site == node else edge.site
                    if other in left:
                        left.discard(other)
                        group.append(other)
                        stack.append(other)
            groups.append(sorted(group, key=order.__getitem__))
        return groups

    # -- cut-off groups -------------------------------------------------------------------

    def _cut_off(self, group: list[str], reached: set[str]) -> None:
        topo, members = self.topology, set(group)
        outside = reached | {HUB}
        boundary = {
            edge.link.id: edge
            for site_id in group
            for edge in topo.adjacent[site_id]
            if (edge.site in members) != (edge.far in members)
            and (edge.far if edge.site in members else edge.site) in outside
        }
        failed = sorted(
            (edge for edge in boundary.values() if self.evidence.links.get(edge.link.id) == "down"),
            key=lambda edge: (edge.link.role != "primary", edge.site not in members),
        )
        inner = {edge.link.id for s in group for edge in topo.adjacent[s]}
        self.explained_links |= inner
        for site_id in group:
            self.unreachable.update(d.id for d in topo.sites[site_id].devices)
        # Planned only when every failed link is under maintenance: a backup that fails while
        # its primary is being worked on is an outage nobody planned, named by the backup.
        unplanned = [
            edge
            for edge in failed
            if not (self._in("link", edge.link.id) or self._in("site", edge.site))
        ]
        if failed:
            status: SiteStatus = "down" if unplanned else "maintenance"
        elif self._silent_after_contact(group):
            status = "down"
        else:
            status = "unknown"
        for site_id in group:
            self.sites[site_id] = "maintenance" if self._in("site", site_id) else status
        if status != "down":
            return
        impacted = [s for s in group if self.sites[s] == "down"]
        if not impacted:
            return
        users = sum(topo.sites[s].users for s in impacted)
        priority = self._outage_priority(impacted, users)
        names = _names(topo, impacted)
        covers = self._covered(group, inner)
        kind: CauseKind
        if unplanned:
            first = unplanned[0].link
            key, kind = f"link:{first.id}", "link"
            title = f"{_link_name(first)} down: {names} cut off ({_users(users)})"
            links = [edge.link.id for edge in unplanned]
            detail = {
                "link": first.id,
                "links": links,
                "site": unplanned[0].site,
                "evidence": self._notes(links),
            }
            if len(unplanned) < len(failed):
                detail["in_maintenance"] = [e.link.id for e in failed if e not in unplanned]
        else:
            key, kind = f"site:{impacted[0]}", "site"
            title = f"{names} unreachable: agent silent, no link evidence ({_users(users)})"
            detail = {"site": impacted[0], "evidence": "agent silent, links unknown"}
        self.causes.append(
            Cause(key, kind, priority, title, tuple(impacted), users, detail, covers - {key})
        )

    def _silent_after_contact(self, group: list[str]) -> bool:
        """Whether a group with no link evidence has an agent that was heard and fell silent."""
        alive = self.evidence.agents_alive
        return any(site in alive and not alive[site] for site in group)

    def _covered(self, group: list[str], links: set[str]) -> frozenset[str]:
        """Every lesser key a cut explains: its links, sites, agents and devices."""
        keys = {f"link:{link}" for link in links}
        for site_id in group:
            keys |= self.topology.keys_of(site_id)
        return frozenset(keys)

    def _outage_priority(self, sites: list[str], users: int) -> Priority:
        topo = self.topology
        large = topo.inventory.priorities.large_site_users
        if users >= large or any(topo.sites[s].critical for s in sites):
            return "P1"
        return "P2"

    # -- reachable sites ------------------------------------------------------------------

    def _reached(self, site: Site) -> None:
        if self._in("site", site.id):
            self.sites[site.id] = "maintenance"
            return
        own = [link for link in site.links if link.id not in self.explained_links]
        status = self._reached_links(site, own)
        self.sites[site.id] = status
        if status == "maintenance":
            return  # planned work on its links: a silent agent or dark devices are expected
        alive = self.evidence.agents_alive.get(site.id)
        if alive is False and site.id in self.topology.agents:
            agent = self.topology.agents[site.id]
            title = f"Agent {agent} silent; {site.name} still answers from the centre"
            self._local(site, "agent", agent, "P3", title=title, detail={"agent": agent})
        if alive:
            self._devices(site)

    def _reached_links(self, site: Site, links: list[Link]) -> SiteStatus:
        """Raise what a reachable site's own links show; return the site's status."""
        status: SiteStatus = "up"
        links_state = self.evidence.links
        planned = False
        for link in links:
            state = links_state.get(link.id, "unknown")
            if state not in ("down", "degraded"):
                continue
            if self._in("link", link.id):
                planned = True
                continue
            if state == "down" and link.role == "backup":
                title = f"{_link_name(link)} down: {site.name} has no redundancy"
                detail = {"link": link.id, "links": [link.id], "evidence": self._notes([link.id])}
                self._local(site, "link", link.id, "P3", title=title, detail=detail)
                continue
            status = "degraded"
            if state == "down":
                title = f"{site.name} on its backup: {_link_name(link)} down"
                problem = "primary down"
            else:
                title = f"{_link_name(link)} degraded (loss or round trip over the limits)"
                problem = "degraded"
            detail = {
                "link": link.id,
                "links": [link.id],
                "problem": problem,
                "evidence": self._notes([link.id]),
            }
            self._local(site, "link", link.id, "P2", title=title, detail=detail, users=site.users)
        if status == "up" and planned:
            return "maintenance"
        return status

    def _devices(self, site: Site) -> None:
        """One incident per down device, or one for a kind when a large share of it is down."""
        down = self.evidence.devices_down.get(site.id, frozenset())
        if not down:
            return
        share = self.topology.inventory.priorities.share_of_devices
        for kind, ids in self.topology.kinds[site.id].items():
            counted = [d for d in ids if not self._in("device", d)]
            failing = [d for d in counted if d in down]
            if not failing:
                continue
            if len(failing) >= 2 and len(failing) >= share * len(counted):
                title = f"{len(failing)} of {len(counted)} {kind}s down at {site.name}"
                detail = {"device_kind": kind, "devices": failing, "of": len(counted)}
                covers = frozenset(f"device:{d}" for d in failing)
                ident = f"{site.id}:{kind}"
                self._local(site, "devices", ident, "P2", title=title, detail=detail, covers=covers)
                continue
            for device in failing:
                title = f"{kind.capitalize()} {device} down at {site.name}"
                detail = {"device": device, "device_kind": kind}
                self._local(site, "device", device, "P3", title=title, detail=detail)

    def _local(
        self,
        site: Site,
        kind: CauseKind,
        ident: str,
        priority: Priority,
        *,
        title: str,
        detail: Mapping[str, Any],
        users: int = 0,
        covers: frozenset[str] = frozenset(),
    ) -> None:
        """Raise a cause that stays within one site, keyed `kind:ident`."""
        facts = {**detail, "site": site.id}
        key = f"{kind}:{ident}"
        self.causes.append(Cause(key, kind, priority, title, (site.id,), users, facts, covers))

    def _notes(self, links: list[str]) -> list[str]:
        """Return what the sources said of these links; each named when there are several."""
        notes = self.evidence.notes
        if len(links) == 1:
            return list(notes.get(links[0], ()))
        return [f"{link}: {note}" for link in links for note in notes.get(link, ())]

    def _in(self, scope: Scope, ident: str) -> bool:
        return (scope, ident) in self.maintained


def _names(topology: Topology, sites: list[str]) -> str:
    names = [topology.sites[s].name for s in sites]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _link_name(link: Link) -> str:
    return f"{link.kind.upper() if link.kind == 'mpls' else link.kind} link {link.id}"


def _users(count: int) -> str:
    return f"{count} user" if count == 1 else f"{count} users"
