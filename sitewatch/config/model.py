"""The validated configuration, as frozen records.

Everything here has passed validation: code that receives an `Inventory`, an `AgentConfig` or a
`CollectorConfig` never checks a value again. Overridable settings (thresholds, SNMP
credentials) are already resolved for each site, link and device, so nobody downstream has to
know the inheritance rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

HUB = "hub"
"""The `to:` of a link that reaches the central network directly."""

LINK_KINDS = ("mpls", "wireless", "fibre", "lte", "adsl")
LinkRole = Literal["primary", "backup"]
LINK_ROLES: tuple[LinkRole, ...] = ("primary", "backup")
DEVICE_KINDS = ("printer", "phone", "switch", "router", "access-point", "server", "ups", "other")
PROBE_KINDS = ("icmp", "tcp", "http", "snmp", "sip")
SNMP_PROFILES = ("printer", "interface", "system", "custom")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PRIORITIES = ("P1", "P2", "P3")

SnmpVersion = Literal["1", "2c", "3"]
Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Probe timing and the hysteresis that turns probe results into states."""

    interval: timedelta
    timeout: timedelta
    fail_after: int
    recover_after: int
    loss_degraded: float
    rtt_degraded_ms: float


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """Working hours that SLA clocks count; `days` holds weekday numbers, Monday = 0."""

    days: frozenset[int]
    start: time
    end: time
    holidays: str | None  # ISO country code for the `holidays` package, or None for none


@dataclass(frozen=True, slots=True)
class Priorities:
    """How impact maps to priority."""

    large_site_users: int
    share_of_devices: float
    reopen_window: timedelta


@dataclass(frozen=True, slots=True)
class SlaTarget:
    """One priority's target: resolve `target` of incidents within `resolve_within`.

    `resolve_within` counts working time: hours are business hours and each day (`2d`) is one
    whole working day, so the SLA clock, not this record, decides what a day is.
    """

    resolve_within: timedelta
    target: float


@dataclass(frozen=True, slots=True)
class SnmpCredentials:
    """How to talk SNMP to one device; v3 fields are None for v1/v2c and vice versa."""

    version: SnmpVersion
    port: int
    community: str | None
    user: str | None
    auth_protocol: str | None
    auth_password: str | None
    priv_protocol: str | None
    priv_password: str | None
    context: str = ""  # SNMPv3 context name; most agents use the empty default


@dataclass(frozen=True, slots=True)
class CustomOid:
    """A vendor OID read by the `custom` SNMP profile, with the range it should stay in."""

    name: str
    oid: str
    minimum: float | None
    maximum: float | None


@dataclass(frozen=True, slots=True)
class IcmpProbe:
    """Ping the device `count` times, `interval` seconds apart, for loss and jitter."""

    count: int = 3
    interval: float = 0.2
    kind: Literal["icmp"] = "icmp"
    # Where the echo leaves from. A link's far-end ping sent from the link's own address
    # (`source`) or out of its interface (`via`) can only succeed over that link: evidence
    # bound to the link, where an unbound ping proves only that some path works.
    source: str | None = None
    via: str | None = None  # an interface name of the agent's host


@dataclass(frozen=True, slots=True)
class TcpProbe:
    """Connect to one TCP port of the device."""

    port: int
    kind: Literal["tcp"] = "tcp"


@dataclass(frozen=True, slots=True)
class HttpProbe:
    """Fetch a URL, optionally expecting a status and a piece of the body."""

    url: str
    expect_status: int | None = None  # None: any status below 400
    expect_body: str | None = None
    ca_file: Path | None = None  # trust this CA bundle instead of the system's
    verify_tls: bool = True
    kind: Literal["http"] = "http"


@dataclass(frozen=True, slots=True)
class SnmpProbe:
    """Read one SNMP profile from the device."""

    profile: str
    credentials: SnmpCredentials
    oids: tuple[CustomOid, ...]
    kind: Literal["snmp"] = "snmp"


@dataclass(frozen=True, slots=True)
class SipProbe:
    """Send SIP OPTIONS to the device."""

    port: int
    transport: Literal["udp", "tcp"]
    kind: Literal["sip"] = "sip"


@dataclass(frozen=True, slots=True)
class InterfaceProbe:
    """Read one interface's IF-MIB row from a router: ifOperStatus, errors and octets.

    Probed for a link (`interface:` in the inventory): the router's own view of its WAN
    interface is evidence bound to that link, whichever path the site's traffic takes.
    Exactly one of `ifname` (IF-MIB ifName) and `ifindex` names the interface.
    """

    credentials: SnmpCredentials
    ifname: str | None
    ifindex: int | None
    kind: Literal["interface"] = "interface"


@dataclass(frozen=True, slots=True)
class PathProbe:
    """Send TTL-limited echoes toward `toward` and report which next hop answers.

    Each link of the site names the hop(s) that answer at `ttl` while traffic runs over it
    (its provider edge), so the answering address says which link carries the traffic now:
    the cheapest way to see a failover from behind a router. `hops` maps every link of the
    site to its next-hop addresses, so a result can name the link in use even when it is
    not the one probed for.
    """

    toward: str
    ttl: int
    hops: tuple[tuple[str, tuple[str, ...]], ...]  # (link id, its next-hop addresses)
    kind: Literal["path"] = "path"


ProbeSpec = IcmpProbe | TcpProbe | HttpProbe | SnmpProbe | SipProbe | InterfaceProbe | PathProbe


@dataclass(frozen=True, slots=True)
class Device:
    """A printer, phone or other endpoint at a site."""

    id: str
    kind: str
    address: str  # an IP address or a host name
    probes: tuple[ProbeSpec, ...]
    thresholds: Thresholds


@dataclass(frozen=True, slots=True)
class LinkInterface:
    """The router interface a link leaves the site by: read over SNMP through the agent."""

    device: str  # the id of a device of the same site (the router) with SNMP credentials
    ifname: str | None  # IF-MIB ifName, e.g. "Gi0/1"; exactly one of ifname and ifindex
    ifindex: int | None
    # The router's SNMP credentials, resolved like its own probes' (device, site, inventory);
    # None only while the inventory is being read.
    credentials: SnmpCredentials | None = None


@dataclass(frozen=True, slots=True)
class PathSpec:
    """A site's path probe: TTL-limited echoes toward the hub, `ttl` hops out.

    `ttl` is how many hops away the provider edges are: 1 when the agent runs on the router,
    2 when it sits on the LAN behind it.
    """

    toward: IPAddress
    ttl: int


@dataclass(frozen=True, slots=True)
class Link:
    """A WAN link from a site towards the hub, directly or through another site.

    Its evidence comes in two kinds (DESIGN.md, "Evidence bound to what it proves"): the
    agent's ping of `probe` proves only that the far end is reachable by some path; the
    centre's ping of `edge`, the router's `interface`, the path probe's `next_hop` and a
    ping sent from `source` or `via` can only succeed over this link.
    """

    id: str
    kind: str
    role: Literal["primary", "backup"]
    to: str  # HUB or the id of the site this link reaches the network through
    probe: tuple[IPAddress, ...]  # far-end addresses the agent pings
    edge: IPAddress | None  # this site's end of the link, pinged from the centre
    thresholds: Thresholds
    next_hop: tuple[IPAddress, ...] = ()  # hops the site's path probe sees over this link
    interface: LinkInterface | None = None
    source: IPAddress | None = None  # the agent pings `probe` from this address of the link
    via: str | None = None  # ... or out of this interface of the agent's host

    @property
    def bound_ping(self) -> bool:
        """Whether the agent's ping of the far end is sent over this link only."""
        return self.source is not None or self.via is not None


@dataclass(frozen=True, slots=True)
class Site:
    """A branch office or building with its links and devices."""

    id: str
    name: str
    users: int
    critical: bool
    monitored: bool
    links: tuple[Link, ...]
    devices: tuple[Device, ...]
    thresholds: Thresholds
    path: PathSpec | None = None  # the agent's path probe, when its links name next hops

    @property
    def upstream(self) -> tuple[str, ...]:
        """Return where this site's links lead, primary links first, without repeats."""
        ordered = sorted(self.links, key=lambda link: link.role != "primary")
        return tuple(dict.fromkeys(link.to for link in ordered))


@dataclass(frozen=True, slots=True)
class Inventory:
    """The ICT team's one inventory: organisation, policy and every site."""

    source: Path
    organisation: str
    timezone: str
    business_hours: BusinessHours
    thresholds: Thresholds
    priorities: Priorities
    sla: dict[str, SlaTarget]  # keyed by priority, P1..P3
    snmp: SnmpCredentials
    sites: tuple[Site, ...]

    def site(self, site_id: str) -> Site:
        """Return the site with this id, or raise KeyError."""
        for site in self.sites:
            if site.id == site_id:
                return site
        raise KeyError(site_id)

    def links(self) -> Iterator[tuple[Site, Link]]:
        """Yield every link with the site it belongs to."""
        for site in self.sites:
            for link in site.links:
                yield site, link

    def devices(self) -> Iterator[tuple[Site, Device]]:
        """Yield every device with the site it belongs to."""
        for site in self.sites:
            for device in site.devices:
                yield site, device


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """What a branch-office agent needs; its probe plan comes from the collector."""

    source: Path
    id: str
    site: str
    # base URLs, http:// or https://, in the order to try them: several collectors on one
    # database take results alike, and the agent moves to the next when one fails
    collectors: tuple[str, ...]
    ca_file: Path | None
    token_file: Path
    state_dir: Path


Dialect = Literal["sqlite", "postgresql"]
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# libpq's TLS options the collector's file may set, and the sslmode values libpq knows.
TLS_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True, slots=True)
class DatabaseSpec:
    """Where the collector's database is: a SQLite file, or a PostgreSQL server.

    Here, not in collector.store, because the configuration names it and the configuration
    package must not import the collector (whose modules import the configuration); how to
    connect to it (`collector.store.database.conninfo`) is the store's business.
    """

    path: Path | None = None  # a SQLite file
    url: str | None = None  # postgresql://user@host:port/dbname, without a password
    password_file: Path | None = None  # the PostgreSQL password, on its first line
    tls: tuple[tuple[str, str], ...] = ()  # libpq's ssl* options, as (name, value)

    @classmethod
    def of(cls, where: str | Path | DatabaseSpec) -> DatabaseSpec:
        """Return the spec for a path, a URL, or a spec as it is."""
        if isinstance(where, DatabaseSpec):
            return where
        text = str(where)
        if text.startswith(POSTGRES_SCHEMES):
            return cls(url=text)
        return cls(path=Path(where))

    @property
    def dialect(self) -> Dialect:
        return "postgresql" if self.url is not None else "sqlite"

    def __str__(self) -> str:
        """Name the database for messages: the file, or the URL (it carries no password)."""
        return str(self.path) if self.url is None else self.url


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Certificate and key for serving HTTPS."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class AgentCredential:
    """An agent allowed to ship results, known by the SHA-256 of its token."""

    id: str
    site: str
    token_sha256: str


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A bearer token for staff scripts and screens."""

    name: str
    role: Role
    token_sha256: str


@dataclass(frozen=True, slots=True)
class User:
    """A dashboard login."""

    name: str
    role: Role
    password_hash: str


@dataclass(frozen=True, slots=True)
class WebhookNotifier:
    """POST incidents to a URL."""

    url: str
    format: Literal["generic", "pagerduty"]
    routing_key: str | None  # PagerDuty integration key
    kind: Literal["webhook"] = "webhook"


@dataclass(frozen=True, slots=True)
class EmailNotifier:
    """Mail incidents through an SMTP relay."""

    smtp_host: str
    smtp_port: int
    sender: str
    recipients: tuple[str, ...]
    starttls: bool
    kind: Literal["email"] = "email"


Notifier = WebhookNotifier | EmailNotifier


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """The central collector: where it listens, what it stores, who may talk to it."""

    source: Path
    listen_host: str
    listen_port: int
    tls: TlsFiles | None
    database: str  # the SQLite file's path, or the postgresql:// URL: for messages
    database_spec: DatabaseSpec  # the database in full, with its password file and TLS options
    inventory: Inventory
    agents: tuple[AgentCredential, ...]
    api_tokens: tuple[ApiToken, ...]
    users: tuple[User, ...]
    notify: tuple[Notifier, ...]
    # Reverse proxies whose X-Forwarded-For is believed (the collector's HTTP front door).
    trusted_proxies: tuple[IPNetwork, ...] = ()
