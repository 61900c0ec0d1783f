"""From evidence to state: targets with hysteresis, then links, devices, sites and agents.

Each (target, kind, vantage) keeps a counter of consecutive failures and successes: it goes
down after `fail_after` failures and comes back after `recover_after` successes, so one lost
packet does not flap a site. Results are applied in the order they were probed; a late result
(older than the newest one applied, e.g. a replayed backlog) is history, stored but not allowed
to move the current state. Two vantage points: the agent's view from inside its site and the
centre's view of each link's edge; the agent's counts while it is heard from, the centre's when
it has gone silent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from probes.result import ProbeResult
from sitewatch.config.model import Inventory, Link, Site, Thresholds

Status = Literal["up", "degraded", "down", "unknown"]
SiteStatus = Literal["up", "degraded", "down", "unknown", "maintenance", "unmonitored"]
Vantage = Literal["agent", "centre"]
SILENT_AFTER_INTERVALS = 3  # an agent unheard for this many probe intervals is silent


@dataclass
class TargetState:
    """The hysteresis of one target seen from one vantage point."""

    thresholds: Thresholds
    status: Status = "unknown"
    since: float = 0.0
    last_ts: float = 0.0
    failures: int = 0
    successes: int = 0
    last: ProbeResult | None = None

    def observe(self, result: ProbeResult, *, degradable: bool) -> bool:
        """Apply one result in probe order; return whether the status changed."""
        ts = result.ts.timestamp()
        if ts < self.last_ts:
            return False  # late: history, not news
        self.last_ts, self.last = ts, result
        if result.ok:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.failures, self.successes = self.failures + 1, 0
        new = self.status
        if not result.ok and (self.failures >= self.thresholds.fail_after or new == "unknown"):
            new = "down" if self.failures >= self.thresholds.fail_after else new
        elif result.ok and (self.successes >= self.thresholds.recover_after or new == "unknown"):
            new = "degraded" if degradable and self._degraded(result) else "up"
        if new != self.status:
            self.status, self.since = new, ts
            return True
        return False

    def _degraded(self, result: ProbeResult) -> bool:
        limits = self.thresholds
        return (result.loss or 0.0) >= limits.loss_degraded or (
            result.rtt_ms or 0.0
        ) >= limits.rtt_degraded_ms


@dataclass(frozen=True, slots=True)
class LinkView:
    id: str
    kind: str
    role: str
    status: Status
    since: float
    vantage: Vantage | None  # whose evidence decided, None without any


@dataclass(frozen=True, slots=True)
class DeviceView:
    id: str
    kind: str
    address: str
    status: Status
    since: float


@dataclass(frozen=True, slots=True)
class SiteView:
    id: str
    name: str
    status: SiteStatus
    since: float
    users: int
    upstream: tuple[str, ...]
    agent_alive: bool | None  # None: the site has no agent configured
    links: tuple[LinkView, ...]
    devices: tuple[DeviceView, ...]


@dataclass
class StateBook:
    """Every target's state, and the views of links, devices and sites built from them."""

    inventory: Inventory
    agents: dict[str, str] = field(default_factory=dict)  # agent id -> site id
    targets: dict[tuple[str, str, Vantage], TargetState] = field(default_factory=dict)
    last_heard: dict[str, float] = field(default_factory=dict)  # site id -> agent contact
    site_status: dict[str, tuple[SiteStatus, float]] = field(default_factory=dict)
    limits: dict[str, tuple[Thresholds, bool]] = field(init=False)  # target -> (limits, link?)
    inside: dict[str, dict[str, TargetState]] = field(init=False)  # agent's view, by target

    def __post_init__(self) -> None:
        self.limits = {link.id: (link.thresholds, True) for _, link in self.inventory.links()}
        self.limits |= {d.id: (d.thresholds, False) for _, d in self.inventory.devices()}
        self.inside = {}

    def observe(self, vantage: Vantage, result: ProbeResult) -> bool:
        """Apply one result; return whether a target's status changed."""
        limits = self.limits.get(result.target)
        if limits is None:
            return False  # the agent's own host, or a target no longer in the inventory
        thresholds, degradable = limits
        key = (result.target, result.kind, vantage)
        state = self.targets.get(key)
        if state is None:
            state = self.targets[key] = TargetState(thresholds)
            if vantage == "agent":
                self.inside.setdefault(result.target, {})[result.kind] = state
        return state.observe(result, degradable=degradable)

    def heard_from(self, agent: str, when: float) -> None:
        """Note that an agent reached the collector at `when` (a batch or a heartbeat)."""
        site = self.agents.get(agent)
        if site is not None:
            self.last_heard[site] = max(self.last_heard.get(site, 0.0), when)

    def agent_alive(self, site: Site, now: float) -> bool:
        limit = SILENT_AFTER_INTERVALS * site.thresholds.interval.total_seconds()
        return now - self.last_heard.get(site.id, float("-inf")) <= limit

    def views(self, now: float) -> Iterator[SiteView]:
        """Yield every site's current view, remembering since when each status holds."""
        for site in self.inventory.sites:
            view = self._site(site, now)
            previous = self.site_status.get(site.id)
            if previous is None or previous[0] != view.status:
                self.site_status[site.id] = (view.status, now)
            yield view

    def _site(self, site: Site, now: float) -> SiteView:
        has_agent = site.id in self.agents.values()
        alive = self.agent_alive(site, now) if has_agent else False
        links = tuple(self._link(link, alive) for link in site.links)
        devices = tuple(
            DeviceView(d.id, d.kind, d.address, *self._device(d.id, alive)) for d in site.devices
        )
        status = _site_status(site, links, alive)
        since = self.site_status.get(site.id, (status, now))
        return SiteView(
            site.id,
            site.name,
            status,
            since[1] if since[0] == status else now,
            site.users,
            site.upstream,
            alive if has_agent else None,
            links,
            devices,
        )

    def _link(self, link: Link, agent_alive: bool) -> LinkView:
        inside = self.targets.get((link.id, "icmp", "agent"))
        outside = self.targets.get((link.id, "icmp", "centre"))
        if agent_alive and inside is not None and inside.status != "unknown":
            return LinkView(link.id, link.kind, link.role, inside.status, inside.since, "agent")
        if outside is not None and outside.status != "unknown":
            return LinkView(link.id, link.kind, link.role, outside.status, outside.since, "centre")
        return LinkView(link.id, link.kind, link.role, "unknown", 0.0, None)

    def _device(self, device_id: str, agent_alive: bool) -> tuple[Status, float]:
        """A device is down when it stops answering ping; up but failing a service: degraded."""
        states = self.inside.get(device_id, {})
        if not agent_alive or not states:
            return "unknown", 0.0
        ping = states.get("icmp")
        if ping is not None and ping.status == "down":
            return "down", ping.since
        known = [s for s in states.values() if s.status != "unknown"]
        if not known:
            return "unknown", 0.0
        failing = [s for s in known if s.status == "down"]
        if failing and len(failing) == len(known):
            return "down", max(s.since for s in failing)
        if failing:
            return "degraded", max(s.since for s in failing)
        return "up", max(s.since for s in known)


def _site_status(site: Site, links: tuple[LinkView, ...], agent_alive: bool) -> SiteStatus:
    """Whether the site is joined to the network, from its links and whether its agent is heard.

    A site whose agent is heard is up at least through some path, even with all its link probes
    failing (the results had to arrive somehow); without the agent, the centre's view decides.
    """
    if not site.monitored:
        return "unmonitored"
    known = [link for link in links if link.status != "unknown"]
    if not known:
        return "up" if agent_alive else "unknown"
    working = [link for link in known if link.status in ("up", "degraded")]
    if not working:
        return "degraded" if agent_alive else "down"
    primary_down = any(link.role == "primary" and link.status == "down" for link in known)
    if primary_down or any(link.status == "degraded" for link in known):
        return "degraded"
    return "up"
