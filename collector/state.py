"""From evidence to state: targets with hysteresis, then links, devices, sites and agents.

Each (target, kind, vantage) keeps a counter of consecutive failures and successes: it goes
down after `fail_after` failures and comes back after `recover_after` successes, so one lost
packet does not flap a site. Results are applied in the order they were probed; a late result
(older than the newest one applied, e.g. a replayed backlog) is history, stored but not allowed
to move the current state. Two vantage points: the agent's view from inside its site and the
centre's view of each link's edge; the agent's counts while it is heard from.

A link has several sources (the centre's ping of its edge, the router's interface, the path
probe, the agent's far-end ping); what each result means and how they add up to the link's
status is `collector.evidence`: path-bound evidence decides, reachability only says "down".
A result that says nothing of its link (an idle backup's path probe, a router that could not
be read) makes its source unknown, so an old "up" does not outlive what proved it.

The views staff read (`StateBook.views`) are kept between calls, each part rebuilt only when
something it shows may have moved: a link's view when one of its sources is observed, its
site's agent clock moves, the agent's liveness flips, or time makes an agent's word stale (the
moment is known: the oldest probe time that counted, plus the silence allowance); a site's devices
when one of them changes status, its agent's liveness flips, or the latest correlation puts a
different set of them in maintenance or behind a cut. At 1,000 sites of 50 devices, building
every view afresh took a sixth of a second per `GET /api/v1/sites` (bench/report_bench.py).
What is kept is exactly what a fresh build would give for the same `now`
(tests/collector/test_site_views_cache.py).
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from collector.evidence import (
    LINK_ONLY_KINDS,
    LINK_SOURCES,
    EvidenceKind,
    EvidenceView,
    LinkDecision,
    Source,
    SourceReading,
    decide,
    describe,
    meaning,
    source_of,
)
from collector.evidence import Vantage as Vantage  # noqa: PLC0414 -- re-exported, as before
from collector.topology import (
    Correlation,
    Evidence,
    LinkStatus,
    Maintained,
    SiteStatus,
    Topology,
    correlate,
)
from probes.result import ProbeResult
from sitewatch.config.model import Device, Inventory, Link, Site, Thresholds

Status = Literal["up", "degraded", "down", "unknown"]
DeviceStatus = Literal["up", "degraded", "down", "unknown", "unreachable", "maintenance"]
SILENT_AFTER_INTERVALS = 3  # an agent unheard for this many probe intervals is silent
# ... but never sooner than this: a healthy agent may go unheard for a while, e.g. when its post
# hangs on a connection over a link that just failed until the shipper gives up on it (5 s
# without a reply, then a backoff) and retries over the backup. A site's outage is seen sooner,
# from the centre.
SILENT_AFTER_AT_LEAST = 30.0
CLOCK_TOLERANCE = 5.0  # seconds: an agent's clock offset below this is transit, not a wrong clock
OFFSET_SAMPLES = 8  # heartbeats (30 s apart) whose smallest offset is taken


def silence_allowance(interval: float) -> float:
    """Return how long an agent probing every `interval` seconds may go unheard and still count.

    The one rule for every judge of silence: whether an agent is heard (`StateBook.agent_alive`),
    whether its word is still news (`StateBook._decide`), when a replayed agent resumed
    (`collector.history`) and how long incidents are held after a restart (`collector.incidents`).
    """
    return max(SILENT_AFTER_INTERVALS * interval, SILENT_AFTER_AT_LEAST)


@dataclass
class TargetState:
    """The hysteresis of one target seen from one vantage point."""

    thresholds: Thresholds
    status: Status = "unknown"
    since: float = 0.0
    last_ts: float = 0.0
    failures: int = 0
    successes: int = 0
    failing_since: float = 0.0  # when the current run of failures began
    succeeded: float = 0.0  # probe time of the newest success: flow seen after a failure?
    last: ProbeResult | None = None
    # Whether the status was earned by the thresholds (fail_after failures, recover_after
    # successes), not taken from the first result of a target never seen before: only an
    # earned "up" proves that something recovered.
    confirmed: bool = False

    def observe(self, result: ProbeResult, *, degradable: bool, ok: bool | None = None) -> bool:
        """Apply one result in probe order; return whether the status changed.

        `ok` is what the result means for the target when that is not its own `ok` (a path
        probe that saw the backup's hop fails its primary, whatever the probe reported).
        """
        ts = result.ts.timestamp()
        if ts <= self.last_ts:
            # late (history, not news) or seen already: a batch resent after a lost reply, or
            # a result another collector stored and this one read back (collector.arrivals)
            return False
        self.last_ts, self.last = ts, result
        ok = result.ok if ok is None else ok
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            self.succeeded = ts
        else:
            if self.failures == 0:
                self.failing_since = ts
            self.failures, self.successes = self.failures + 1, 0
        new = self.status
        if not ok and (self.failures >= self.thresholds.fail_after or new == "unknown"):
            new = "down" if self.failures >= self.thresholds.fail_after else new
        elif ok and (self.successes >= self.thresholds.recover_after or new == "unknown"):
            new = "degraded" if degradable and self._degraded(result) else "up"
        changed = new != self.status
        if changed:
            self.status, self.since, self.confirmed = new, ts, False
        limits = self.thresholds
        if self.successes >= limits.recover_after or self.failures >= limits.fail_after:
            self.confirmed = True
        return changed

    def forget(self, result: ProbeResult) -> bool:
        """Apply, in probe order, a result that says nothing either way: the state is unknown.

        Its counters start again: evidence that resumes must earn its status afresh.
        """
        ts = result.ts.timestamp()
        if ts <= self.last_ts:
            return False
        self.last_ts, self.last = ts, result
        self.failures = self.successes = 0
        changed = self.status != "unknown"
        if changed:
            self.status, self.since, self.confirmed = "unknown", ts, False
        return changed

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
    status: Status | Literal["maintenance"]
    since: float
    vantage: Vantage | None  # whose evidence decided, None without any
    evidence: tuple[EvidenceView, ...] = ()  # every source's word, counted or not
    conflict: str | None = None  # for staff, when sources disagree with the status shown


@dataclass(frozen=True, slots=True)
class DeviceView:
    id: str
    kind: str
    address: str
    status: DeviceStatus
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


@dataclass(slots=True)
class _KeptLink:
    """A link's view as its evidence decided it (before maintenance), and what it rests on."""

    view: LinkView
    alive: bool  # the agent's liveness it was decided with
    built: float  # the `now` it was decided for
    # the oldest probe time (collector's clock) of an agent's reading that counted: the view
    # holds while it is news (`_decide`), +inf when no agent's reading counted
    fades: float
    allowance: float  # the link's silence allowance
    maintained: LinkView | None = None  # the view in maintenance, made when first shown

    def holds(self, alive: bool, now: float) -> bool:
        """Whether deciding again at `now` would give this view (no source moved since).

        Time only ever makes an agent's reading stale: from `built` on, what did not count
        still does not, and what counted counts while its probe time is within the allowance
        (the same comparison `_decide` makes, so the same answer to the last bit).
        """
        return alive == self.alive and now >= self.built and self.fades >= now - self.allowance

    def shown(self, *, maintenance: bool) -> LinkView:
        """Return the view as shown: in maintenance when correlation says the link is."""
        if not maintenance:
            return self.view
        if self.maintained is None:
            self.maintained = dataclasses.replace(self.view, status="maintenance")
        return self.maintained


@dataclass(slots=True)
class _KeptDevices:
    """A site's device views and what they were built from."""

    alive: bool
    held: tuple[frozenset[str], frozenset[str]]  # its devices maintained, unreachable
    views: tuple[DeviceView, ...]


NOTHING_HELD: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())


@dataclass
class StateBook:
    """Every target's state, the evidence correlation needs, and the views staff read."""

    inventory: Inventory
    agents: dict[str, str] = field(default_factory=dict)  # agent id -> site id
    targets: dict[tuple[str, str, Vantage], TargetState] = field(default_factory=dict)
    last_heard: dict[str, float] = field(default_factory=dict)  # site id -> agent contact
    probed: dict[str, float] = field(default_factory=dict)  # site id -> agent's newest probe
    # site id -> the collector's clock minus the agent's, from its heartbeats: an agent's probe
    # times are on its own clock, and are compared with the centre's and with now
    clock_offset: dict[str, float] = field(default_factory=dict)
    _offsets: dict[str, deque[float]] = field(default_factory=dict)  # recent samples, by site
    site_status: dict[str, tuple[SiteStatus, float]] = field(default_factory=dict)
    link_status: dict[str, str] = field(default_factory=dict)  # as correlation last said
    limits: dict[str, tuple[Thresholds, bool]] = field(init=False)  # target -> (limits, link?)
    inside: dict[str, dict[str, TargetState]] = field(init=False)  # agent's view, by target
    down: dict[str, set[str]] = field(init=False)  # site id -> devices down (agent's view)
    topology: Topology = field(init=False)
    with_agent: frozenset[str] = field(init=False)  # the sites an agent is configured for
    _sites: dict[str, Site] = field(init=False)
    _links: dict[str, tuple[Site, Link]] = field(init=False)  # by link id, with its site
    # by link id: the (kind, vantage) of each result that is evidence about it, and what it is
    # link id -> (kind, vantage) -> what that result source is and proves, in LINK_SOURCES order
    _sources: dict[str, dict[tuple[str, Vantage], tuple[Source, EvidenceKind]]] = field(init=False)
    _other_paths: dict[str, str | None] = field(init=False)  # by link id: the site's other way
    _vouched: frozenset[str] = field(init=False)  # links some path-bound source can show up
    _devices: dict[str, tuple[Site, Device]] = field(init=False)  # by device id, with its site
    # the views kept between calls (see the module docstring), and what invalidates them
    _kept_links: dict[str, _KeptLink] = field(init=False)  # by link id
    _kept_devices: dict[str, _KeptDevices] = field(init=False)  # by site id
    _kept_sites: dict[str, SiteView] = field(init=False)  # by site id
    _stale_links: set[str] = field(init=False)  # link ids: a source observed since kept
    _stale_devices: set[str] = field(init=False)  # site ids: a device's status moved since kept
    _targets_kept: int = field(init=False)  # len(targets) when kept: a target dropped (history)
    _held_of: Correlation | None = field(init=False)  # the correlation `_held` was taken from
    _held: dict[str, tuple[frozenset[str], frozenset[str]]] = field(init=False)  # by site id

    def __post_init__(self) -> None:
        self.limits = {link.id: (link.thresholds, True) for _, link in self.inventory.links()}
        self.limits |= {d.id: (d.thresholds, False) for _, d in self.inventory.devices()}
        self.inside = {}
        self.down = {}
        self.topology = Topology(self.inventory).with_agents(self.agents.items())
        self.with_agent = frozenset(self.agents.values())
        self._sites = {site.id: site for site in self.inventory.sites}
        self._links = {link.id: (site, link) for site, link in self.inventory.links()}
        self._sources = {
            link.id: {
                (kind, vantage): said
                for kind, vantage in LINK_SOURCES
                if (said := source_of(site, link, kind, vantage)) is not None
            }
            for site, link in self._links.values()
        }
        self._other_paths = {
            link.id: _other_path(site, link) for site, link in self._links.values()
        }
        self._devices = {device.id: (site, device) for site, device in self.inventory.devices()}
        self._vouched = frozenset(
            link.id for site, link in self._links.values() if _vouchable(site, link)
        )
        self._forget_views()

    def _forget_views(self) -> None:
        """Drop every kept view: the next call builds them all afresh."""
        self._kept_links, self._kept_devices, self._kept_sites = {}, {}, {}
        self._stale_links, self._stale_devices = set(), set()
        self._targets_kept = len(self.targets)
        self._held_of, self._held = None, {}

    def observe(self, vantage: Vantage, result: ProbeResult) -> bool:
        """Apply one result; return whether a target's status changed.

        A link's result moves its source by what it means for the link
        (`collector.evidence.meaning`): a result that says nothing makes the source unknown.
        """
        limits = self.limits.get(result.target)
        if limits is None:
            return False  # the agent's own host, or a target no longer in the inventory
        thresholds, is_link = limits
        if not is_link and result.kind in LINK_ONLY_KINDS:
            return False  # a link's evidence about a device: stored before ingest refused it
        ok: bool | None = result.ok
        if is_link:
            home, link = self._links[result.target]
            if (result.kind, vantage) not in self._sources[link.id]:
                return False  # not evidence about a link (nothing reads it)
            ok = meaning(home, link, result, from_agent=vantage == "agent")
        key = (result.target, result.kind, vantage)
        state = self.targets.get(key)
        created = state is None
        if state is None:
            state = self.targets[key] = TargetState(thresholds)
            self._targets_kept += 1  # added here, so not a drop behind the book's back
            if vantage == "agent":
                self.inside.setdefault(result.target, {})[result.kind] = state
        if ok is None:
            changed = state.forget(result)
        else:
            degradable = is_link and result.kind == "icmp"  # loss and round trip of a ping
            changed = state.observe(result, degradable=degradable, ok=ok)
        if is_link:
            self._stale_links.add(result.target)  # its evidence shows every applied result
        elif vantage == "agent" and (changed or created):
            self._stale_devices.add(self._devices[result.target][0].id)
        if changed and not is_link and vantage == "agent":
            site = self.topology.device_site.get(result.target)
            if site is not None:
                failing = self._device(result.target, agent_alive=True)[0] == "down"
                down = self.down.setdefault(site, set())
                (down.add if failing else down.discard)(result.target)
        return changed

    def heard_from(self, agent: str, when: float, probed: float | None = None) -> None:
        """Note that an agent reached the collector at `when`, with results up to `probed`."""
        site = self.agents.get(agent)
        if site is not None:
            self.last_heard[site] = max(self.last_heard.get(site, 0.0), when)
            if probed is not None:
                self.probed[site] = max(self.probed.get(site, 0.0), probed)

    def agent_clock(self, agent: str, received: float, clock: float) -> None:
        """Note that an agent's clock read `clock` when the collector's read `received`.

        `received - clock` is the offset plus the batch's transit, and transit is worst just
        when it matters: a post stuck on a link that has just failed arrives seconds late,
        and an offset that large would date the agent's pre-cut successes after the centre's
        failures. Transit only ever adds, so the smallest of the recent offsets is the
        truest (as NTP keeps its best sample); one within CLOCK_TOLERANCE is transit, not a
        wrong clock, and corrects nothing.
        """
        site = self.agents.get(agent)
        if site is None:
            return
        seen = self._offsets.setdefault(site, deque(maxlen=OFFSET_SAMPLES))
        seen.append(received - clock)
        best = min(seen)
        offset = best if abs(best) > CLOCK_TOLERANCE else 0.0
        if self.clock_offset.get(site) != offset and site in self._sites:
            self._stale_links.update(link.id for link in self._sites[site].links)
        self.clock_offset[site] = offset

    def agent_alive(self, site: Site, now: float) -> bool:
        """Whether the agent's word counts: heard lately, with news from after its links failed.

        Silence takes a while to be sure of; the centre's pings are quicker. When the centre
        sees every link of the site down, and the agent's newest result was probed before they
        began to fail, its word is older than the outage and the centre's view decides at once
        (a batch still in flight when the link was cut arrives after the cut, so the time it
        was received proves nothing; the time its results were probed does). Results probed
        after that prove a path the centre cannot see, and the agent still counts.
        """
        if not self.heard_lately(site, now):
            return False
        seen = [self.targets.get((link.id, "icmp", "centre")) for link in site.links]
        known = [state for state in seen if state is not None and state.status != "unknown"]
        return not known or not all(self._outdates(site, state) for state in known)

    def heard_lately(self, site: Site, now: float) -> bool:
        """Whether the site's agent was heard within its silence allowance of `now`."""
        heard = self.last_heard.get(site.id)
        allowance = silence_allowance(site.thresholds.interval.total_seconds())
        return heard is not None and now - heard <= allowance

    def _outdates(self, site: Site, centre: TargetState) -> bool:
        """Whether the centre saw a link of the site fail after the agent's newest result."""
        probed = self.probed.get(site.id, float("-inf")) + self.clock_offset.get(site.id, 0.0)
        return centre.status == "down" and centre.failing_since > probed

    def evidence(self, now: float) -> Evidence:
        """Return what correlation reasons with: link states, agents heard, devices down.

        Agents never heard from do not count either way: a site is not declared down because
        an agent was configured and never installed. A link that is down or degraded brings
        its sources' words, which its incident's cause carries.
        """
        alive = {
            site.id: self.agent_alive(site, now)
            for site in self.inventory.sites
            if site.id in self.last_heard
        }
        links: dict[str, LinkStatus] = {}
        notes: dict[str, tuple[str, ...]] = {}
        for site, link in self.inventory.links():
            decision = self._decide(site, link, alive.get(site.id, False), now)
            links[link.id] = decision.status
            if decision.status in ("down", "degraded"):
                notes[link.id] = decision.notes()
        down = {site: frozenset(devices) for site, devices in self.down.items() if devices}
        return Evidence(links, alive, down, notes)

    def explain(self, link_id: str, now: float, status: str | None = None) -> str:
        """Return a link's status now with the evidence behind it, as one line for a log.

        E.g. "down; centre-ping down: 10.99.6.2: cannot send; far-end-ping up (reachability,
        not counted): 10.99.6.1: 3.2 ms; conflict: seen by centre: down; agent: reachable
        (via backup)". A link no longer in the inventory is said to be so. `status`: the
        status correlation gave the link, when not its evidence's ("maintenance").
        """
        found = self._links.get(link_id)
        if found is None:
            return "no longer in the inventory"
        site, link = found
        alive = site.id in self.with_agent and self.agent_alive(site, now)
        decision = self._decide(site, link, alive, now)
        return describe(status or decision.status, decision.evidence, decision.conflict)

    def correlate(self, now: float, maintained: Maintained = frozenset()) -> Correlation:
        return correlate(self.topology, self.evidence(now), maintained)

    def track(self, correlation: Correlation, now: float) -> list[tuple[str, str]]:
        """Remember since when each status holds; return the sites and links that changed.

        Entities are named as the status log names them: `site:ID`, `link:ID`.
        """
        changed: list[tuple[str, str]] = []
        for site_id, status in correlation.sites.items():
            previous = self.site_status.get(site_id)
            if previous is None or previous[0] != status:
                self.site_status[site_id] = (status, now)
                changed.append((f"site:{site_id}", status))
        for link_id, link_status in correlation.links.items():
            if self.link_status.get(link_id) != link_status:
                self.link_status[link_id] = link_status
                changed.append((f"link:{link_id}", link_status))
        return changed

    def unsure(self, correlation: Correlation, now: float, keys: Iterable[str]) -> frozenset[str]:
        """Return those of `keys` whose subject has no evidence of recovery to show now.

        A cause that is absent proves nothing when its subject is unknown: after a restart a
        phone with no fresh results raises no cause, yet nobody saw it come back. Its incident
        may resolve only once the phone is seen up with `recover_after` successes. Keys as the
        incidents name them: `link:ID`, `site:ID`, `device:ID`, `devices:SITE:KIND`; pass the
        keys of the open incidents, the only ones this matters for (a pass runs every second).

        Never unsure: a subject nobody watches any more (see `unwatched`), whose unknown state
        would otherwise hold its incident open for ever; and a subject inside a maintenance
        window (a site's window covers its links and devices). Correlation raises no cause for
        planned work, so an incident whose subject goes into maintenance resolves, whether its
        state is down (excused) or unknown (an agent switched off for the work): waiting for
        evidence would keep its SLA clock running through the window. A group of devices is
        unsure while any member is: one phone seen up says nothing of the others.
        """
        alive: dict[str, bool] = {}

        def counts(site: Site) -> bool:
            if site.id not in alive:
                alive[site.id] = site.id in self.with_agent and self.agent_alive(site, now)
            return alive[site.id]

        doubtful = set()
        for key in keys:
            if self._unwatched(key) is not None:
                continue
            kind, _, ident = key.partition(":")
            if kind == "site":
                doubt = correlation.sites.get(ident) == "unknown"
            elif kind == "link":
                site, link = self._links[ident]
                doubt = self._link_doubt(site, link, correlation, counts(site), now)
            elif kind == "device":
                site, device = self._devices[ident]
                doubt = self._device_doubt(device.id, correlation, counts(site))
            elif kind == "devices":
                site_id, _, device_kind = ident.partition(":")
                site = self._sites[site_id]
                doubt = any(
                    self._device_doubt(device.id, correlation, counts(site))
                    for device in site.devices
                    if device.kind == device_kind
                )
            else:
                doubt = False  # an agent's silence is evidence enough either way
            if doubt:
                doubtful.add(key)
        return frozenset(doubtful)

    def unwatched(self, keys: Iterable[str]) -> dict[str, str]:
        """Return those of `keys` whose subject nobody watches any more, with the reason.

        A site marked `monitored: false`, an agent removed from the collector's config (its
        site's devices with it, and the links, or the site, with no edge the centre pings), or
        an id gone from the inventory: no evidence will ever come, so no cause either, and the
        incident resolves saying why instead of waiting for a recovery nobody can see.
        """
        reasons = {key: self._unwatched(key) for key in keys}
        return {key: reason for key, reason in reasons.items() if reason is not None}

    def _unwatched(self, key: str) -> str | None:
        kind, _, ident = key.partition(":")
        site: Site | None
        needs_agent = kind in ("device", "devices", "agent")
        if kind == "site":
            site = self._sites.get(ident)
            needs_agent = site is not None and all(link.edge is None for link in site.links)
        elif kind == "link":
            site, link = self._links.get(ident, (None, None))
            needs_agent = link is not None and link.edge is None
        elif kind == "device":
            site = self._devices.get(ident, (None, None))[0]
        elif kind == "devices":
            site_id, _, device_kind = ident.partition(":")
            site = self._sites.get(site_id)
            if site is not None and all(d.kind != device_kind for d in site.devices):
                return "no longer in the inventory"
        elif kind == "agent":
            site = self._sites.get(self.agents.get(ident, ""))
            if site is None:
                return "agent no longer configured"
        else:
            return None
        if site is None:
            return "no longer in the inventory"
        if not site.monitored:
            return "no longer monitored"
        if needs_agent and site.id not in self.with_agent:
            return "no longer monitored: its site has no agent configured"
        return None

    def _link_doubt(
        self, site: Site, link: Link, correlation: Correlation, agent_alive: bool, now: float
    ) -> bool:
        """Whether a link shows no recovery yet: its status must rest on earned path-bound words.

        Reachability never proves a link up, and an "up" taken from a first result proves
        nothing recovered. But a link that no configured source can show up (no edge,
        interface, bound ping, nor a path probe that sees it while idle) was put down by
        reachability alone: an earned reachability "up" is all the recovery it can ever show,
        and waiting for more would hold its incident open for ever.
        """
        if "maintenance" in (correlation.links.get(link.id), correlation.sites.get(site.id)):
            return False
        decision = self._decide(site, link, agent_alive, now)
        decided_by = decision.decided_by
        if decided_by is not None and decided_by.kind == "path-bound" and decided_by.confirmed:
            return False
        if link.id in self._vouched:
            return True
        return not any(
            r.known and r.kind == "reachability" and r.status != "down" and r.confirmed
            for r in decision.readings
        )

    def _device_doubt(self, device: str, correlation: Correlation, agent_alive: bool) -> bool:
        if device in correlation.maintained_devices:
            return False
        states = self.inside.get(device, {}).values()
        return self._device(device, agent_alive)[0] == "unknown" or any(
            s.status in ("up", "degraded") and not s.confirmed for s in states
        )

    def views(self, now: float, correlation: Correlation | None = None) -> Iterator[SiteView]:
        """Yield every site's view, with statuses as correlation decided them.

        Without a correlation, run one now and remember its statuses; with one (the collector's
        latest pass), its statuses were remembered when the pass ran. Parts of the views are
        kept between calls (see the module docstring): a view unchanged is the same object.
        """
        if correlation is None:
            correlation = self.correlate(now)
            self.track(correlation, now)
        if len(self.targets) != self._targets_kept:
            self._forget_views()  # a target was dropped behind the book's back (a replay's)
        held = self._held_by_site(correlation)
        for site in self.inventory.sites:
            yield self._site(site, now, correlation, held.get(site.id, NOTHING_HELD))

    def forget_views(self) -> None:
        """Drop the views kept between calls: the next ones are built afresh.

        Only for a book changed other than through its methods (and for tests, which compare
        kept views with fresh ones); the book's own changes mark what they move.
        """
        self._forget_views()

    def _held_by_site(
        self, correlation: Correlation
    ) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
        """Return, by site, its devices the correlation puts in maintenance and behind a cut.

        Taken once per pass (the sets are small beside 50,000 devices), so a site's devices
        are rebuilt only when its own share of them changes.
        """
        if correlation is not self._held_of:
            found: dict[str, tuple[set[str], set[str]]] = {}
            sets = (correlation.maintained_devices, correlation.unreachable)
            for held, devices in enumerate(sets):
                for device in devices:
                    if (owner := self._devices.get(device)) is not None:
                        found.setdefault(owner[0].id, (set(), set()))[held].add(device)
            self._held = {
                site: (frozenset(maintained), frozenset(unreachable) - maintained)
                for site, (maintained, unreachable) in found.items()
            }
            self._held_of = correlation
        return self._held

    def _site(
        self,
        site: Site,
        now: float,
        correlation: Correlation,
        held: tuple[frozenset[str], frozenset[str]],
    ) -> SiteView:
        status = correlation.sites.get(site.id, "unknown")
        since = self.site_status.get(site.id, (status, now))[1]
        has_agent = site.id in self.with_agent
        alive = self.agent_alive(site, now) if has_agent else False
        links = self._site_links(site, alive, now, correlation)
        devices = self._site_devices(site, alive, held)
        shown = alive if has_agent else None
        kept = self._kept_sites.get(site.id)
        if (
            kept is not None
            and kept.links is links
            and kept.devices is devices
            and kept.agent_alive == shown
            and kept.status == status
            and kept.since == since
        ):
            return kept
        view = SiteView(
            site.id, site.name, status, since, site.users, site.upstream, shown, links, devices
        )
        self._kept_sites[site.id] = view
        return view

    def _site_links(
        self, site: Site, alive: bool, now: float, correlation: Correlation
    ) -> tuple[LinkView, ...]:
        """Return the site's link views, the kept tuple itself when none of them moved."""
        kept_site = self._kept_sites.get(site.id)
        kept_views = () if kept_site is None else kept_site.links
        views = []
        for link in site.links:
            kept = self._kept_links.get(link.id)
            if kept is None or link.id in self._stale_links or not kept.holds(alive, now):
                view, fades = self._link(site, link, alive, now)
                allowance = silence_allowance(link.thresholds.interval.total_seconds())
                kept = self._kept_links[link.id] = _KeptLink(view, alive, now, fades, allowance)
                self._stale_links.discard(link.id)
            views.append(kept.shown(maintenance=correlation.links.get(link.id) == "maintenance"))
        if len(kept_views) == len(views) and all(map(operator.is_, kept_views, views)):
            return kept_views
        return tuple(views)

    def _site_devices(
        self, site: Site, alive: bool, held: tuple[frozenset[str], frozenset[str]]
    ) -> tuple[DeviceView, ...]:
        """Return the site's device views, rebuilt only when one of their inputs moved."""
        kept = self._kept_devices.get(site.id)
        if (
            kept is not None
            and site.id not in self._stale_devices
            and kept.alive == alive
            and kept.held == held
        ):
            return kept.views
        maintained, unreachable = held
        devices = []
        for d in site.devices:
            device_status: DeviceStatus
            device_status, device_since = self._device(d.id, alive)
            if d.id in maintained:
                device_status = "maintenance"
            elif d.id in unreachable:
                device_status = "unreachable"
            devices.append(DeviceView(d.id, d.kind, d.address, device_status, device_since))
        views = tuple(devices)
        if kept is not None and kept.views == views:
            views = kept.views  # the same: keep the object, so comparing it later is cheap
        self._kept_devices[site.id] = _KeptDevices(alive, held, views)
        self._stale_devices.discard(site.id)
        return views

    def _link(
        self, site: Site, link: Link, agent_alive: bool, now: float
    ) -> tuple[LinkView, float]:
        """Return the link's view, and the oldest agent probe time that counted (`_KeptLink`)."""
        decision, fades = self._decision(site, link, agent_alive, now)
        view = LinkView(
            link.id,
            link.kind,
            link.role,
            decision.status,
            decision.since,
            decision.vantage,
            decision.evidence,
            decision.conflict,
        )
        return view, fades

    def _decide(self, site: Site, link: Link, agent_alive: bool, now: float) -> LinkDecision:
        """Add up a link's sources (`collector.evidence.decide`).

        The agent's word counts while it does (`agent_alive`) and while it is news: probed
        within the silence allowance of now. An agent on a site with a backup stays heard,
        yet its batch may hang for a while on a connection over the link that just failed;
        its older successes then refute nothing newer than them, since only a success probed
        after a failure began can. And the backlog an agent replays after a cut, or the last
        hour a restarted collector reads back, is history: probed minutes ago, it says how
        the links were then, not now, and must not open incidents about the past.

        An agent's probe times are on its own clock: they are moved to the collector's by
        the offset its heartbeats show, before they are weighed against the centre's or now.
        """
        return self._decision(site, link, agent_alive, now)[0]

    def _decision(
        self, site: Site, link: Link, agent_alive: bool, now: float
    ) -> tuple[LinkDecision, float]:
        """`_decide`, with the oldest agent probe time that counted (+inf when none did)."""
        offset = self.clock_offset.get(site.id, 0.0)
        news_after = now - silence_allowance(link.thresholds.interval.total_seconds())
        readings = []
        fades = math.inf
        for (kind, vantage), (source, proves) in self._sources[link.id].items():
            state = self.targets.get((link.id, kind, vantage))
            if state is None:
                continue
            shift = offset if vantage == "agent" else 0.0
            probed = _moved(state.last_ts, shift)
            counts = vantage == "centre" or (agent_alive and probed >= news_after)
            if counts and vantage == "agent":
                fades = min(fades, probed)
            readings.append(
                SourceReading(
                    source,
                    proves,
                    vantage,
                    state.status,
                    _moved(state.since, shift),
                    probed,
                    _moved(state.failing_since, shift),
                    _moved(state.succeeded, shift),
                    state.confirmed,
                    counts,
                    state.last,
                )
            )
        return decide(readings, other_path=self._other_paths[link.id]), fades

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


def _moved(ts: float, shift: float) -> float:
    """Move a probe time to the collector's clock; 0.0 stands for "never" and stays."""
    return ts + shift if ts else ts


def _vouchable(site: Site, link: Link) -> bool:
    """Whether some configured path-bound source of `link` can show it up at any time.

    The path probe sees a backup only while it carries the traffic, so it cannot vouch for an
    idle one; the agent's far-end ping of a site's only link is path-bound.
    """
    path_probe = bool(link.next_hop) and link.role != "backup"
    single = len(site.links) == 1
    return bool(link.edge or link.interface or link.bound_ping or path_probe or single)


def _other_path(site: Site, link: Link) -> str | None:
    """Name the site's other way out than `link`, as the conflict sentence says it."""
    roles = {other.role for other in site.links if other is not link}
    if not roles:
        return None
    if link.role == "primary" and "backup" in roles:
        return "backup"
    if link.role == "backup" and "primary" in roles:
        return "primary"
    return "another link"
