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

from dataclasses import dataclass
from typing import Literal

EvidenceKind = Literal["path-bound", "reachability"]
Source = Literal["centre-ping", "far-end-ping", "bound-ping", "interface", "path"]
Reading = Literal["up", "degraded", "down", "unknown"]


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
