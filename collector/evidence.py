"""What each piece of link evidence proves, and the link status it adds up to.

A ping of an address proves that it is reachable by *some* path; after a failover the agent's
ping of its primary's far end travels over the backup and still answers. Only evidence bound
to a link can say that *that link* is up or down (DESIGN.md, "Evidence bound to what it
proves"):

- path-bound: the centre's ping of the link's edge (the site-side address, routed only over
  that link); the router's IF-MIB ifOperStatus of the link's interface; the path probe, which
  sees which next hop answers; the agent's far-end ping sent from the link's own address or
  interface; and, for a site's only link, the agent's far-end ping (there is no other path);
- reachability: the agent's far-end ping of a link whose site has another way out.

Path-bound evidence decides a link's status; reachability decides whether a site is cut off.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from probes.result import ProbeResult
from sitewatch.config.model import Link, Site

EvidenceKind = Literal["path-bound", "reachability"]
Source = Literal["centre-ping", "far-end-ping", "bound-ping", "interface", "path"]
Reading = Literal["up", "degraded", "down", "unknown"]
LINK_ONLY_KINDS = frozenset({"interface", "path"})  # results that speak only of a link
Vantage = Literal["agent", "centre"]

# The kinds of result that speak about a link, and from where: the order staff read them in.
LINK_SOURCES: tuple[tuple[str, Vantage], ...] = (
    ("icmp", "centre"),
    ("interface", "agent"),
    ("path", "agent"),
    ("icmp", "agent"),
)
# An interface whose ifOperStatus is one of these cannot carry traffic; any other state
# (testing, dormant, unknown) says nothing either way.
OPER_DOWN = frozenset({"down", "lowerLayerDown", "notPresent"})
_WHO: dict[Source, str] = {
    "centre-ping": "centre",
    "far-end-ping": "agent",
    "bound-ping": "agent's bound ping",
    "interface": "router",
    "path": "path probe",
}


@dataclass(frozen=True, slots=True)
class EvidenceView:
    """One source's word about a link, as staff see it beside the link's status."""

    source: Source
    kind: EvidenceKind
    status: Reading
    since: float  # when this source's status began
    probed: float  # probe time of its newest result; 0.0 without one
    detail: str  # for a person: "10.99.6.2: cannot send", "traffic via willowvale-fibre"
    counted: bool  # whether it took part in the decision (False: reachability, stale words)


@dataclass(frozen=True, slots=True)
class SourceReading:
    """One source's state about one link, after hysteresis: what the decision weighs.

    Times are probe times (when the results were taken), never arrival times, so a batch
    that reaches a busy collector late decides exactly what it would have decided on time.
    """

    source: Source
    kind: EvidenceKind
    vantage: Vantage
    status: Reading
    since: float  # when this status began
    probed: float  # probe time of the newest result; 0.0 without one
    failing_since: float  # probe time of the first failure of the current run
    succeeded: float  # probe time of the newest success; 0.0 without one
    confirmed: bool  # the status was earned by the thresholds, not taken from a first result
    alive: bool  # its word counts: agent-sourced evidence only while the agent counts
    last: ProbeResult | None  # the newest result, for the detail staff read

    @property
    def detail(self) -> str:
        return result_detail(self.last)

    @property
    def proves_flow(self) -> bool:
        """Whether a success of this source shows traffic crossing the link.

        The router's interface being up is layer 1 (the line has carrier), not layer 3: a
        dead provider edge behind it still reads "up", so it refutes nothing.
        """
        return self.kind == "path-bound" and self.source != "interface"

    @property
    def known(self) -> bool:
        return self.alive and self.status != "unknown"


@dataclass(frozen=True, slots=True)
class LinkDecision:
    """A link's status, the source that decided it, and everything said about it.

    A correlation pass needs only the status for most links: the words for people
    (`evidence`, `conflict`, `notes`) are put together when asked for.
    """

    status: Reading
    since: float  # when the deciding source's status began; 0.0 when unknown
    decided_by: SourceReading | None
    readings: tuple[SourceReading, ...]
    counted: tuple[bool, ...]  # for each reading: whether it took part in the decision
    refuted: tuple[SourceReading, ...]  # downs that newer traffic refuted
    other_path: str | None  # the site's other way out, as the conflict sentence names it

    @property
    def vantage(self) -> Vantage | None:
        """Whose evidence decided: the centre's ping, or the agent's probes."""
        return None if self.decided_by is None else self.decided_by.vantage

    @property
    def evidence(self) -> tuple[EvidenceView, ...]:
        """Every source's word, counted or not, in the order staff read them."""
        return tuple(
            EvidenceView(r.source, r.kind, r.status, r.since, r.probed, r.detail, counted)
            for r, counted in zip(self.readings, self.counted, strict=True)
        )

    @property
    def conflict(self) -> str | None:
        """A sentence for staff when a source that counts disagrees with the status.

        E.g. "seen by centre: down; agent: reachable (via backup)". None when all agree, or
        when nothing decided (an unknown link has nothing to disagree with).
        """
        decider = self.decided_by
        if decider is None:
            return None
        side = _side(self.status)
        against = [r for r in self.readings if r.known and _side(r.status) != side]
        if not against:
            return None
        words = [f"{_WHO[r.source]}: {_said(r, self.refuted, self.other_path)}" for r in against]
        return "; ".join([f"seen by {_WHO[decider.source]}: {self.status}", *words])

    def notes(self) -> tuple[str, ...]:
        """Return each source's word as a short string, for an incident's cause."""
        return tuple(_note(view) for view in self.evidence)


def source_of(
    site: Site, link: Link, kind: str, vantage: Vantage
) -> tuple[Source, EvidenceKind] | None:
    """Return which source a link result of `kind` from `vantage` is, and what it proves.

    The agent's ping of the far end proves only that some path reaches it, unless it can
    only leave over this link: sent from the link's own address or interface (a bound
    ping), or the link is the site's only way out. None: not evidence about a link, which
    includes a source the inventory no longer gives the link (no `edge`, `interface` or
    `next_hop`): its stored results, replayed at start-up, would otherwise stand for ever,
    since nothing probes it any more.
    """
    if vantage == "centre":
        return ("centre-ping", "path-bound") if kind == "icmp" and link.edge else None
    if kind == "icmp":
        if link.bound_ping:
            return "bound-ping", "path-bound"
        return "far-end-ping", "path-bound" if len(site.links) == 1 else "reachability"
    if kind == "interface" and link.interface is not None:
        return "interface", "path-bound"
    if kind == "path" and link.next_hop:
        return "path", "path-bound"
    return None


def meaning(site: Site, link: Link, result: ProbeResult, *, from_agent: bool) -> bool | None:
    """Return what one link result says of the link: success, failure, or None (no evidence).

    - interface: oper "up" is a success, "down"/"lowerLayerDown"/"notPresent" a failure;
      another state, or a router that could not be read (no oper), says nothing: the
      source becomes unknown rather than keep an "up" nobody can vouch for.
    - path: the hop of this link answered, a success. The backup's hop answered while this
      is the primary, a failure: traffic left it. Anything else says nothing: a backup idles
      while the primary carries the traffic, and an unknown hop or no answer names no link.
    - pings: the result's own `ok`; but the agent's ping of a link whose inventory binds it
      (`source`/`via`) counts only when the result says it was sent bound: an agent too old
      to bind would send it by any path, and its "up" would be counted as the link's.
    """
    if result.kind == "interface":
        oper = result.value.get("oper")
        if oper == "up":
            return True
        return False if oper in OPER_DOWN else None
    if result.kind == "path":
        via = result.value.get("via")
        if via == link.id:
            return True
        taken = next((other for other in site.links if other.id == via), None)
        if taken is not None and taken.role == "backup" and link.role == "primary":
            return False
        return None
    if from_agent and result.kind == "icmp" and link.bound_ping:
        bound = result.value.get("source") or result.value.get("via")
        return result.ok if bound else None
    return result.ok


def result_detail(result: ProbeResult | None) -> str:
    """Return a line for a person about one result: its own detail, or what it found.

    A value's strings may hold U+0000 (stored as JSON, escaped); this line goes into the status
    log's text column, which PostgreSQL refuses it in, so it shows as U+FFFD.
    """
    return _found(result).replace("\x00", "\ufffd")


def _found(result: ProbeResult | None) -> str:
    if result is None:
        return ""
    if result.detail:
        return result.detail
    value = result.value
    if result.kind == "interface":  # an agent may leave any of these out: never say "None"
        ifindex, oper, admin = value.get("ifindex"), value.get("oper"), value.get("admin")
        name = value.get("ifname") or (f"ifIndex {ifindex}" if ifindex is not None else "")
        name = name or "the interface"
        if oper is None:
            return f"{name}: the router did not say its state"
        return f"{name} is {oper}, admin {admin}" if admin else f"{name} is {oper}"
    if result.kind == "path":  # in the words of probes/path.py's own details
        hop, ttl, via = value.get("hop"), value.get("ttl"), value.get("via")
        if hop is None:
            return f"no hop answered at TTL {ttl}"
        answered = f"{hop} answered at TTL {ttl}"
        if via == result.target:
            return f"traffic goes over it ({answered})"
        if via is not None:
            return f"traffic goes via {via} ({answered})"
        return f"{answered}, the next hop of no link of this site"
    address = value.get("address")
    where = f"{address}: " if isinstance(address, str) else ""
    if result.ok and result.rtt_ms is not None:
        lost = f", {result.loss:.0%} lost" if result.loss else ""
        return f"{where}{result.rtt_ms:.1f} ms{lost}"
    return where.removesuffix(": ")


def decide(readings: Iterable[SourceReading], *, other_path: str | None) -> LinkDecision:
    """Add up one link's readings to its status (DESIGN.md, "Evidence bound to what it proves").

    1. Known path-bound readings decide. A "down" is refuted only by a proof of flow (the
       centre's ping, the path probe, a bound ping, the only link's far-end ping) that is up
       and whose newest success was probed after the down's failures began: the link
       carried traffic since, so the failures are older news. The interface refutes nothing.
    2. Any unrefuted down: down. Else any degraded: degraded. Else up. Over refuted downs
       the status rests on the traffic that refuted them, not on an interface up all along.
    3. With no known path-bound reading, reachability can only say down (not even some path
       reaches the far end); its "up" may have crossed another link, so the link is unknown.

    `other_path` names the site's other way out ("backup"), for the conflict sentence; None
    when the link is the site's only one.
    """
    readings = tuple(readings)
    bound = [r for r in readings if r.known and r.kind == "path-bound"]
    refuted: list[SourceReading] = []
    status: Reading
    if bound:
        flows = [r for r in bound if r.proves_flow and r.status in ("up", "degraded")]
        standing: list[SourceReading] = []
        for down in (r for r in bound if r.status == "down"):
            newer = any(u.succeeded > down.failing_since for u in flows)
            (refuted if newer else standing).append(down)
        # a refuted down rests the status on the traffic that refuted it: an "up" that held
        # all through the failures (the router's carrier) proves no recovery
        refuters = [u for u in flows if any(u.succeeded > d.failing_since for d in refuted)]
        if standing:
            status, agreeing = "down", standing
        elif degraded := [r for r in bound if r.status == "degraded"]:
            status, agreeing = "degraded", _preferring(degraded, refuters)
        else:
            status, agreeing = "up", _preferring([r for r in bound if r.status == "up"], refuters)
        took_part = tuple(r.known and r.kind == "path-bound" for r in readings)
    else:
        agreeing = [r for r in readings if r.known and r.status == "down"]
        status = "down" if agreeing else "unknown"
        took_part = tuple(r.known and r.status == "down" for r in readings)
    # the earliest agreeing source dates the status; an "up" rests first on an earned one
    decider = min(
        agreeing, key=lambda r: (status != "down" and not r.confirmed, r.since), default=None
    )
    since = decider.since if decider is not None else 0.0
    return LinkDecision(status, since, decider, readings, took_part, tuple(refuted), other_path)


def describe(status: str, evidence: Sequence[EvidenceView], conflict: str | None) -> str:
    """Return a link's status with the evidence behind it as one line, for logs and people.

    E.g. "down; centre-ping down: 10.99.6.2: cannot send; far-end-ping up (reachability,
    not counted): 10.99.6.1: 3.2 ms; conflict: seen by centre: down; agent: reachable (via
    backup)".
    """
    words = [status, *(_note(view) for view in evidence)] if evidence else [status, "no evidence"]
    if conflict:
        words.append(f"conflict: {conflict}")
    return "; ".join(words)


def _note(view: EvidenceView) -> str:
    """Return one source's word: "far-end-ping up (reachability, not counted): 10.99.6.1: 3 ms"."""
    qualifiers = []
    if view.kind == "reachability":
        qualifiers.append("reachability")
    if not view.counted:
        qualifiers.append("not counted")
    said = f"{view.source} {view.status}"
    if qualifiers:
        said += f" ({', '.join(qualifiers)})"
    # one line: a detail is the agent's text, and this goes into the collector's log
    detail = " ".join(view.detail.split())
    return f"{said}: {detail}" if detail else said


def _among(reading: SourceReading, readings: Sequence[SourceReading]) -> bool:
    return any(reading is other for other in readings)


def _preferring(
    readings: list[SourceReading], preferred: Sequence[SourceReading]
) -> list[SourceReading]:
    """Return those of `readings` among `preferred`, or all of them when none is."""
    return [r for r in readings if _among(r, preferred)] or readings


def _side(status: str) -> str:
    return "down" if status == "down" else "working"


def _said(reading: SourceReading, refuted: Sequence[SourceReading], other_path: str | None) -> str:
    """Return what a disagreeing source says, in the words of the conflict sentence."""
    if reading.kind == "reachability":
        if reading.status == "down":
            return "far end unreachable"
        return f"reachable (via {other_path})" if other_path else "reachable"
    if _among(reading, refuted):
        return "down, refuted by traffic seen since its failures began"
    if reading.source == "interface" and reading.status != "down":
        return "interface up (carrier only, proves no traffic)"
    if reading.status != "down":
        return f"{reading.status}, but not since the failures began"
    return "down"
