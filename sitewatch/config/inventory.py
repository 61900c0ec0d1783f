"""Build and check the inventory: organisation, policy, sites, links and devices.

Checks run in two rounds. The first reads every value and its type. The second looks across
the whole file: ids unique across sites, links and devices; every link's `to` naming the hub or
a site; no chain of sites that loops back on itself; every monitored site reaching the hub.

A link's path-bound evidence (DESIGN.md, "Evidence bound to what it proves") is checked
against its site: the router its `interface` names is a device of that site, and `next_hop`
and the site's `path` come together. `link_warnings` then says which links of a site with a
backup have no such evidence, so that a failover to or from them cannot be seen: allowed, but
worth a warning from check-config.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from sitewatch.config.errors import ConfigError, Problem
from sitewatch.config.model import (
    DEVICE_KINDS,
    HUB,
    LINK_KINDS,
    LINK_ROLES,
    PRIORITIES,
    PROBE_KINDS,
    SNMP_PROFILES,
    WEEKDAYS,
    BusinessHours,
    CustomOid,
    Device,
    HttpProbe,
    IcmpProbe,
    Inventory,
    IPAddress,
    Link,
    LinkInterface,
    PathSpec,
    Priorities,
    ProbeSpec,
    SipProbe,
    Site,
    SlaTarget,
    SnmpCredentials,
    SnmpProbe,
    SnmpVersion,
    TcpProbe,
    Thresholds,
)
from sitewatch.config.reader import Reader, suggestion
from sitewatch.config.yamltree import Node

INVENTORY_KEYS = (
    "organisation",
    "timezone",
    "business_hours",
    "thresholds",
    "priorities",
    "sla",
    "snmp",
    "sites",
)

DEFAULT_THRESHOLDS = Thresholds(
    interval=timedelta(seconds=30),
    timeout=timedelta(seconds=2),
    fail_after=3,
    recover_after=2,
    loss_degraded=0.2,
    rtt_degraded_ms=300.0,
)
DEFAULT_BUSINESS_HOURS_DAYS = frozenset(range(5))
DEFAULT_START = time(8, 0)
DEFAULT_END = time(16, 30)
DEFAULT_PRIORITIES = Priorities(
    large_site_users=10, share_of_devices=0.5, reopen_window=timedelta(minutes=15)
)
DEFAULT_SLA = {  # the Shared ICT Services board pack's targets
    "P1": SlaTarget(timedelta(hours=4), 0.95),
    "P2": SlaTarget(timedelta(hours=8), 0.95),
    "P3": SlaTarget(timedelta(days=2), 0.80),
}
SNMP_KEYS = (
    "version",
    "port",
    "community",
    "user",
    "auth_protocol",
    "auth_password",
    "priv_protocol",
    "priv_password",
    "context",
)
SNMP_AUTH_PROTOCOLS = ("md5", "sha", "sha224", "sha256", "sha384", "sha512")
SNMP_PRIV_PROTOCOLS = ("des", "3des", "aes", "aes128", "aes192", "aes256")
DEFAULT_SNMP_PROFILE = {"printer": "printer", "switch": "interface", "router": "interface"}
MIN_USM_PASSWORD = 8  # RFC 3414: shorter USM passwords are refused by agents
LINK_KEYS = (
    "id",
    "kind",
    "role",
    "to",
    "probe",
    "edge",
    "next_hop",
    "interface",
    "source",
    "via",
    "thresholds",
)
PATH_BOUND_KEYS = ("edge", "interface", "next_hop", "source", "via")
MAX_PATH_TTL = 30  # traceroute's default horizon; a hub further away is not "behind" a site
MAX_IFINDEX = 2**31 - 1  # IF-MIB InterfaceIndex
# As Linux's dev_valid_name takes one: not "." or "..", no '/', ':' (an alias label such as
# eth0:1 names eth0 to the kernel), whitespace or control character (a NUL would end it early);
# at most 15 bytes (IFNAMSIZ less the NUL), which is_interface_name also counts in UTF-8.
INTERFACE_NAME = re.compile(r"(?!\.\.?\Z)[^/:\s\x00-\x1f\x7f]{1,15}")
MAX_IFNAME = 255  # IF-MIB ifName is a DisplayString: at most 255 octets
IFNAMSIZ = 16  # Linux's buffer for an interface name, its NUL included
# Devices at the end of a site's network: their own port being up says nothing of a link.
NOT_ON_A_LINK = frozenset({"printer", "phone", "ups"})

R = TypeVar("R", Thresholds, Priorities, SlaTarget)


def is_interface_name(name: str) -> bool:
    """Whether Linux would take `name` for an interface, as the agent binds to it."""
    if not INTERFACE_NAME.fullmatch(name):
        return False
    return len(name.encode("utf-8", "surrogatepass")) <= IFNAMSIZ - 1


def _is_address(text: str) -> bool:
    """Whether `text` is an IP address (the reader reads a bad one as 0.0.0.0, said once)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_one_host(address: IPAddress) -> bool:
    """Whether `address` names one host: not 0.0.0.0/::, multicast or the IPv4 broadcast."""
    broadcast = address == ipaddress.IPv4Address("255.255.255.255")
    return not (address.is_unspecified or address.is_multicast or broadcast)


def is_ifname(name: str) -> bool:
    """Whether `name` can be a router's IF-MIB ifName: a DisplayString, printable, one line."""
    return 0 < len(name) <= MAX_IFNAME and name.isprintable()


def build_inventory(root: Node, file: Path) -> Inventory:
    """Return the inventory in `root`, or raise ConfigError naming every problem."""
    builder = _InventoryBuilder(Reader(str(file)))
    inventory = builder.build(root, file)
    if builder.reader.problems:
        raise ConfigError(builder.reader.problems)
    return inventory


def link_warnings(inventory: Inventory, root: Node) -> list[Problem]:
    """Return a warning for each link of a site with several links that no evidence binds.

    Such a link is seen only by the agent's ping of its far end, which any working path
    answers: after a failover to or from it, nothing says which link carries the traffic.
    `root` is the file's node tree that `inventory` was built from, for the lines.
    """
    warnings: list[Problem] = []
    site_nodes = _list_child(root, "sites")
    for site, site_node in zip(inventory.sites, site_nodes, strict=False):
        if not site.monitored or len(site.links) < 2:  # one link: no failover to miss
            continue
        for link, node in zip(site.links, _list_child(site_node, "links"), strict=False):
            if not _path_bound(link):
                message = (
                    f"warning: link {link.id!r} has no path-bound evidence "
                    f"({', '.join(PATH_BOUND_KEYS[:-1])} or {PATH_BOUND_KEYS[-1]}): a failover "
                    "to/from it cannot be seen"
                )
            elif link.role == "backup" and not (link.edge or link.interface or link.bound_ping):
                message = (
                    f"warning: backup link {link.id!r} is watched only by the path probe "
                    "(next_hop), which sees a backup only while it carries the traffic: if it "
                    "fails while idle, nothing will tell; add an edge, interface, source or via"
                )
            else:
                continue
            warnings.append(Problem(str(inventory.source), node.line, node.path, message))
    return warnings


def _path_bound(link: Link) -> bool:
    """Return whether some evidence of `link` can only succeed over that link."""
    return bool(link.edge or link.interface or link.next_hop or link.bound_ping)


@dataclass
class _Ids:
    """Where each id was first defined, to report duplicates by line."""

    lines: dict[str, tuple[str, int]] = field(default_factory=dict)

    def claim(self, reader: Reader, node: Node, value: str, what: str) -> None:
        if not value:
            return
        if value in self.lines:
            other, line = self.lines[value]
            reader.problem(node, f"id {value!r} is already used by the {other} on line {line}")
        else:
            self.lines[value] = (what, node.line)


class _InventoryBuilder:
    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.ids = _Ids()
        self.addresses: dict[str, tuple[str, int]] = {}
        self.snmp_nodes: dict[str, Node] = {}  # the inventory's own snmp settings

    def build(self, root: Node, file: Path) -> Inventory:
        r = self.reader
        top = r.mapping(root, INVENTORY_KEYS, required=("organisation", "sites"))
        organisation = r.string(top["organisation"]) if "organisation" in top else ""
        timezone = self._timezone(top["timezone"]) if "timezone" in top else "UTC"
        hours = self._business_hours(top.get("business_hours"))
        thresholds = self._thresholds(top.get("thresholds"), DEFAULT_THRESHOLDS)
        priorities = self._priorities(top.get("priorities"))
        sla = self._sla(top.get("sla"))
        snmp_nodes = self._snmp_nodes(top.get("snmp"), {})
        self.snmp_nodes = snmp_nodes
        snmp = self._snmp(snmp_nodes, top.get("snmp") or root)
        site_nodes = r.items(top["sites"]) if "sites" in top else []
        sites = tuple(self._site(node, thresholds, snmp_nodes) for node in site_nodes)
        self._check_topology(sites, site_nodes)
        return Inventory(
            source=file,
            organisation=organisation,
            timezone=timezone,
            business_hours=hours,
            thresholds=thresholds,
            priorities=priorities,
            sla=sla,
            snmp=snmp,
            sites=sites,
        )

    # -- organisation-wide settings --------------------------------------------------------

    def _timezone(self, node: Node) -> str:
        name = self.reader.string(node)
        if name:
            try:
                zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                self.reader.problem(
                    node, f"unknown time zone {name!r} (use a name like Africa/Johannesburg)"
                )
        return name

    def _business_hours(self, node: Node | None) -> BusinessHours:
        r = self.reader
        fields = r.mapping(node, ("days", "start", "end", "holidays")) if node else {}
        days = DEFAULT_BUSINESS_HOURS_DAYS
        if "days" in fields:
            chosen: set[int] = set()
            for item in r.items(fields["days"]):
                day = r.choice(item, WEEKDAYS)
                if WEEKDAYS.index(day) in chosen:
                    r.problem(item, f"{day} is listed twice")
                chosen.add(WEEKDAYS.index(day))
            if not chosen and not r.problems:
                r.problem(fields["days"], "needs at least one working day")
            days = frozenset(chosen)
        start = r.time_of_day(fields["start"]) if "start" in fields else DEFAULT_START
        end = r.time_of_day(fields["end"]) if "end" in fields else DEFAULT_END
        if node is not None and start >= end:
            r.problem(node, f"start {start:%H:%M} must be before end {end:%H:%M}")
        country: str | None = "ZA"
        if "holidays" in fields:
            country = self._holidays(fields["holidays"])
        return BusinessHours(days=days, start=start, end=end, holidays=country)

    def _holidays(self, node: Node) -> str | None:
        if node.value is None or node.value == "none":
            return None
        if node.value is False:  # YAML reads the country code NO as false
            self.reader.problem(node, 'write Norway\'s code in quotes ("NO"), or none for none')
            return None
        code = self.reader.string(node).upper()
        import holidays  # noqa: PLC0415 -- 4 MB an agent, which reads no inventory, need not load

        if code and code not in holidays.list_supported_countries():
            self.reader.problem(
                node,
                f"no public-holiday calendar for country {code!r}: use an ISO 3166 code "
                "such as ZA, or none",
            )
        return code or None

    def _thresholds(self, node: Node | None, inherited: Thresholds) -> Thresholds:
        if node is None:
            return inherited
        r = self.reader
        problems_before = len(r.problems)
        readers: dict[str, Callable[[Node], object]] = {
            "interval": lambda n: r.duration(n, minimum=timedelta(seconds=1)),
            "timeout": lambda n: r.duration(n, minimum=timedelta(milliseconds=100)),
            "fail_after": lambda n: r.integer(n, minimum=1, maximum=1000),
            "recover_after": lambda n: r.integer(n, minimum=1, maximum=1000),
            "loss_degraded": lambda n: r.fraction(n, allow_zero=False),
            "rtt_degraded_ms": lambda n: r.number(n, minimum=1, maximum=600_000),
        }
        fields = r.mapping(node, readers)
        resolved = _override(inherited, fields, readers)
        changed = "timeout" in fields or "interval" in fields
        if changed and resolved.timeout >= resolved.interval and len(r.problems) == problems_before:
            r.problem(
                fields.get("timeout") or fields.get("interval") or node,
                f"timeout ({resolved.timeout.total_seconds():g}s) must be shorter than "
                f"interval ({resolved.interval.total_seconds():g}s)",
            )
        return resolved

    def _priorities(self, node: Node | None) -> Priorities:
        if node is None:
            return DEFAULT_PRIORITIES
        r = self.reader
        readers: dict[str, Callable[[Node], object]] = {
            "large_site_users": lambda n: r.integer(n, minimum=1),
            "share_of_devices": lambda n: r.fraction(n, allow_zero=False),
            "reopen_window": r.duration,
        }
        return _override(DEFAULT_PRIORITIES, r.mapping(node, readers), readers)

    def _sla(self, node: Node | None) -> dict[str, SlaTarget]:
        sla = dict(DEFAULT_SLA)
        if node is None:
            return sla
        r = self.reader
        readers: dict[str, Callable[[Node], object]] = {
            "resolve_within": lambda n: r.duration(n, minimum=timedelta(minutes=1)),
            "target": lambda n: r.fraction(n, allow_zero=False),
        }
        for priority, child in r.mapping(node, PRIORITIES).items():
            fields = r.mapping(child, readers, required=("resolve_within",))
            sla[priority] = _override(sla[priority], fields, readers)
        return sla

    # -- SNMP credentials, inherited field by field ----------------------------------------

    def _snmp_nodes(self, node: Node | None, inherited: dict[str, Node]) -> dict[str, Node]:
        if node is None:
            return inherited
        return {**inherited, **self.reader.mapping(node, SNMP_KEYS)}

    def _snmp(self, fields: dict[str, Node], where: Node) -> SnmpCredentials:
        r = self.reader
        version: SnmpVersion = "2c"
        if "version" in fields:
            raw = fields["version"].value
            text = str(raw).strip() if isinstance(raw, int | str) else ""
            if text in ("1", "2c", "3"):
                version = cast("SnmpVersion", text)
            else:
                r.problem(fields["version"], f"SNMP version must be 1, 2c or 3, not {raw!r}")
        port = r.port(fields["port"]) if "port" in fields else 161
        v3_keys = [key for key in SNMP_KEYS[3:] if key in fields]
        if version != "3":
            for key in v3_keys:
                r.problem(fields[key], "applies only to SNMP version 3")
            community = r.string(fields["community"]) if "community" in fields else "public"
            return SnmpCredentials(version, port, community, None, None, None, None, None)
        if "community" in fields:
            r.problem(fields["community"], "applies only to SNMP versions 1 and 2c")
        user = r.string(fields["user"]) if "user" in fields else None
        if user is None:
            r.problem(where, "SNMP version 3 needs a user")
        auth_protocol = auth_password = priv_protocol = priv_password = None
        if "auth_protocol" in fields:
            auth_protocol = r.choice(fields["auth_protocol"], SNMP_AUTH_PROTOCOLS)
            auth_password = self._usm_password(fields, "auth_password", where)
        if "priv_protocol" in fields:
            if auth_protocol is None:
                r.problem(fields["priv_protocol"], "privacy (priv) needs auth_protocol too")
            priv_protocol = r.choice(fields["priv_protocol"], SNMP_PRIV_PROTOCOLS)
            priv_password = self._usm_password(fields, "priv_password", where)
        context = r.string(fields["context"], allow_empty=True) if "context" in fields else ""
        return SnmpCredentials(
            version,
            port,
            None,
            user,
            auth_protocol,
            auth_password,
            priv_protocol,
            priv_password,
            context,
        )

    def _usm_password(self, fields: dict[str, Node], key: str, where: Node) -> str | None:
        if key not in fields:
            self.reader.problem(where, f"missing {key}")
            return None
        password = self.reader.string(fields[key])
        if password and len(password) < MIN_USM_PASSWORD:
            self.reader.problem(fields[key], f"must be at least {MIN_USM_PASSWORD} characters")
        return password

    # -- sites, links and devices -----------------------------------------------------------

    def _site(self, node: Node, inherited: Thresholds, snmp_nodes: dict[str, Node]) -> Site:
        r = self.reader
        fields = r.mapping(
            node,
            (
                "id",
                "name",
                "users",
                "critical",
                "monitored",
                "thresholds",
                "snmp",
                "links",
                "devices",
                "path",
            ),
            required=("id", "name", "users"),
        )
        site_id = r.identifier(fields["id"]) if "id" in fields else ""
        if "id" in fields:
            self.ids.claim(r, fields["id"], site_id, "site")
        if site_id == HUB:
            r.problem(fields["id"], f"{HUB!r} is reserved for the central network")
        thresholds = self._thresholds(fields.get("thresholds"), inherited)
        site_snmp = self._snmp_nodes(fields.get("snmp"), snmp_nodes)
        link_nodes = r.items(fields["links"]) if "links" in fields else []
        links = tuple(self._link(item, site_id, thresholds) for item in link_nodes)
        device_nodes = r.items(fields["devices"]) if "devices" in fields else []
        devices = tuple(self._device(item, thresholds, site_snmp) for item in device_nodes)
        path = self._path(fields["path"]) if "path" in fields else None
        links = self._check_link_evidence(
            links,
            link_nodes,
            devices=devices,
            device_nodes=device_nodes,
            site_snmp=site_snmp,
            path_node=fields.get("path"),
            path=path,
        )
        return Site(
            id=site_id,
            name=r.string(fields["name"]) if "name" in fields else "",
            users=r.integer(fields["users"], minimum=0) if "users" in fields else 0,
            critical=r.boolean(fields["critical"]) if "critical" in fields else False,
            monitored=r.boolean(fields["monitored"]) if "monitored" in fields else True,
            links=links,
            devices=devices,
            thresholds=thresholds,
            path=path,
        )

    def _path(self, node: Node) -> PathSpec:
        """Read `{toward: 10.99.0.254, ttl: 1}`: what the path probe aims at, how far out."""
        r = self.reader
        fields = r.mapping(node, ("toward", "ttl"), required=("toward",))
        toward = r.ip_address(fields["toward"]) if "toward" in fields else ipaddress.IPv4Address(0)
        written = str(fields["toward"].value).strip() if "toward" in fields else ""
        if not is_one_host(toward) and _is_address(written):
            r.problem(fields["toward"], f"{toward} is not one host the path probe can aim at")
        ttl = r.integer(fields["ttl"], minimum=1, maximum=MAX_PATH_TTL) if "ttl" in fields else 1
        return PathSpec(toward=toward, ttl=ttl)

    def _link(self, node: Node, site_id: str, inherited: Thresholds) -> Link:
        r = self.reader
        fields = r.mapping(node, LINK_KEYS, required=("id", "kind", "to"))
        link_id = r.identifier(fields["id"]) if "id" in fields else ""
        if "id" in fields:
            self.ids.claim(r, fields["id"], link_id, "link")
        to = r.identifier(fields["to"]) if "to" in fields else HUB
        if to == site_id and to:
            r.problem(fields["to"], "a link cannot lead to its own site")
        probe = tuple(r.ip_address(item) for item in r.items(fields.get("probe", Node([], 0, ""))))
        edge = r.ip_address(fields["edge"]) if "edge" in fields else None
        if not probe and edge is None:
            r.problem(
                node, "nothing to probe: give the far end's address(es) in probe, an edge, or both"
            )
        role: Literal["primary", "backup"] = "primary"
        if "role" in fields:
            role = r.choice(fields["role"], LINK_ROLES)
        next_hop: tuple[IPAddress, ...] = ()
        if "next_hop" in fields:
            next_hop = tuple(r.ip_address(item) for item in r.items(fields["next_hop"]))
            if not next_hop and fields["next_hop"].value in (None, []):
                r.problem(
                    fields["next_hop"],
                    "needs at least one address: the hop that answers the path probe "
                    "while traffic uses this link",
                )
        source = r.ip_address(fields["source"]) if "source" in fields else None
        written = str(fields["source"].value).strip() if "source" in fields else ""
        if source is not None and _is_address(written) and not is_one_host(source):
            r.problem(
                fields["source"],
                f"{source} is not one address of the agent's host: a ping from it would leave "
                "by any path, and be counted as this link's",
            )
        elif source is not None and (other := [a for a in probe if a.version != source.version]):
            r.problem(
                fields["source"],
                f"{source} is IPv{source.version}, the far end {other[0]} is not: "
                "a ping cannot leave from it",
            )
        via = self._interface_name(fields["via"]) if "via" in fields else None
        for key in ("source", "via"):
            if key in fields and not probe:
                r.problem(fields[key], "sets where the far end's ping leaves from: give probe too")
        return Link(
            id=link_id,
            kind=r.choice(fields["kind"], LINK_KINDS) if "kind" in fields else LINK_KINDS[0],
            role=role,
            to=to,
            probe=probe,
            edge=edge,
            thresholds=self._thresholds(fields.get("thresholds"), inherited),
            next_hop=next_hop,
            interface=self._link_interface(fields["interface"]) if "interface" in fields else None,
            source=source,
            via=via,
        )

    def _link_interface(self, node: Node) -> LinkInterface:
        """Read `{device: ROUTER_ID, ifname: up0}` (or `ifindex: 2` instead of ifname)."""
        r = self.reader
        fields = r.mapping(node, ("device", "ifname", "ifindex"), required=("device",))
        ifname = r.string(fields["ifname"]) if "ifname" in fields else None
        if ifname and not is_ifname(ifname):
            shown = ifname if len(ifname) <= 40 else ifname[:39] + "…"
            r.problem(
                fields["ifname"],
                f"{shown!r} is not an ifName: at most {MAX_IFNAME} characters on one line, "
                "printable",
            )
        ifindex = None
        if "ifindex" in fields:
            ifindex = r.integer(fields["ifindex"], minimum=1, maximum=MAX_IFINDEX)
        if isinstance(node.value, dict) and ("ifname" in fields) == ("ifindex" in fields):
            r.problem(node, "give exactly one of ifname (like up0) and ifindex (like 2)")
        return LinkInterface(
            device=r.identifier(fields["device"]) if "device" in fields else "",
            ifname=ifname,
            ifindex=ifindex,
        )

    def _interface_name(self, node: Node) -> str:
        """Return an interface name of the agent's host, as Linux allows one."""
        name = self.reader.string(node)
        if name and not is_interface_name(name):
            self.reader.problem(
                node,
                f"{name!r} is not an interface name: 1 to 15 bytes, no '/', ':', spaces or "
                "control characters, not . or ..",
            )
        return name

    def _device(self, node: Node, inherited: Thresholds, snmp_nodes: dict[str, Node]) -> Device:
        r = self.reader
        fields = r.mapping(
            node,
            ("id", "kind", "address", "probes", "thresholds", "snmp"),
            required=("id", "kind", "address"),
        )
        device_id = r.identifier(fields["id"]) if "id" in fields else ""
        if "id" in fields:
            self.ids.claim(r, fields["id"], device_id, "device")
        kind = r.choice(fields["kind"], DEVICE_KINDS) if "kind" in fields else "other"
        address = r.host(fields["address"]) if "address" in fields else ""
        if address:
            if address in self.addresses:
                other, line = self.addresses[address]
                r.problem(
                    fields["address"], f"{address} is already the address of {other} (line {line})"
                )
            else:
                self.addresses[address] = (device_id or "another device", fields["address"].line)
        device_snmp = self._snmp_nodes(fields.get("snmp"), snmp_nodes)
        probe_nodes = r.items(fields["probes"]) if "probes" in fields else []
        if "probes" not in fields:
            probe_nodes = [Node("icmp", node.line, node.child_path("probes"))]
        probes: list[ProbeSpec] = []
        seen: dict[str, int] = {}
        for item in probe_nodes:
            spec = self._probe(item, kind, address, device_snmp, fields.get("snmp") or node)
            if spec is None:
                continue
            signature = repr(spec)
            if signature in seen:
                r.problem(item, f"the same probe is already listed on line {seen[signature]}")
            seen[signature] = item.line
            probes.append(spec)
        return Device(
            id=device_id,
            kind=kind,
            address=address,
            probes=tuple(probes),
            thresholds=self._thresholds(fields.get("thresholds"), inherited),
        )

    def _probe(
        self,
        node: Node,
        device_kind: str,
        address: str,
        snmp_nodes: dict[str, Node],
        snmp_where: Node,
    ) -> ProbeSpec | None:
        """Read `icmp` or `{kind: tcp, port: 9100}`; each kind takes its own options."""
        r = self.reader
        if isinstance(node.value, dict):
            kind_node = node.value.get("kind")
            if kind_node is None:
                r.problem(node, "missing required key 'kind'")
                return None
            kind = r.choice(kind_node, PROBE_KINDS)
            options = {
                "icmp": ("count", "interval"),
                "tcp": ("port",),
                "http": ("url", "expect_status", "expect_body", "ca_file", "verify_tls"),
                "snmp": ("profile", "oids"),
                "sip": ("port", "transport"),
            }[kind]
            fields = r.mapping(
                node, ("kind", *options), required=("port",) if kind == "tcp" else ()
            )
        else:
            kind = r.choice(node, PROBE_KINDS)
            if kind == "tcp":
                r.problem(node, "a tcp probe needs a port: write {kind: tcp, port: 9100}")
                return None
            fields = {}
        if kind == "icmp":
            return IcmpProbe(
                count=r.integer(fields["count"], minimum=1, maximum=100)
                if "count" in fields
                else 3,
                interval=r.duration(
                    fields["interval"], minimum=timedelta(milliseconds=10)
                ).total_seconds()
                if "interval" in fields
                else 0.2,
            )
        if kind == "tcp":
            return TcpProbe(port=r.port(fields["port"]) if "port" in fields else 1)
        if kind == "http":
            return self._http_probe(fields, address)
        if kind == "sip":
            return SipProbe(
                port=r.port(fields["port"]) if "port" in fields else 5060,
                transport=r.choice(fields["transport"], ("udp", "tcp"))
                if "transport" in fields
                else "udp",
            )
        return self._snmp_probe(node, fields, device_kind, snmp_nodes, snmp_where)

    def _http_probe(self, fields: dict[str, Node], address: str) -> HttpProbe:
        r = self.reader
        host = f"[{address}]" if ":" in address else address
        url = f"http://{host}/"
        if "url" in fields:
            url = r.string(fields["url"])
            if url and not url.startswith(("http://", "https://")):
                r.problem(fields["url"], f"{url!r} must start with http:// or https://")
        return HttpProbe(
            url=url,
            expect_status=r.integer(fields["expect_status"], minimum=100, maximum=599)
            if "expect_status" in fields
            else None,
            expect_body=r.string(fields["expect_body"]) if "expect_body" in fields else None,
            ca_file=(
                Path(r.file).parent / r.string(fields["ca_file"]) if "ca_file" in fields else None
            ),
            verify_tls=r.boolean(fields["verify_tls"]) if "verify_tls" in fields else True,
        )

    def _snmp_probe(
        self,
        node: Node,
        fields: dict[str, Node],
        device_kind: str,
        snmp_nodes: dict[str, Node],
        snmp_where: Node,
    ) -> SnmpProbe:
        r = self.reader
        profile = DEFAULT_SNMP_PROFILE.get(device_kind, "system")
        if "profile" in fields:
            profile = r.choice(fields["profile"], SNMP_PROFILES)
        oids = tuple(
            self._custom_oid(item) for item in r.items(fields.get("oids", Node([], 0, "")))
        )
        if profile == "custom" and not oids:
            r.problem(node, "the custom profile needs oids: [{name: ..., oid: ...}]")
        if profile != "custom" and oids:
            r.problem(fields["oids"], "oids apply only to profile: custom")
        return SnmpProbe(profile=profile, credentials=self._snmp(snmp_nodes, snmp_where), oids=oids)

    def _custom_oid(self, node: Node) -> CustomOid:
        r = self.reader
        fields = r.mapping(node, ("name", "oid", "min", "max"), required=("name", "oid"))
        oid = r.string(fields["oid"]) if "oid" in fields else ""
        parts = oid.lstrip(".").split(".")
        if oid and (len(parts) < 2 or not all(part.isdigit() for part in parts)):
            r.problem(fields["oid"], f"{oid!r} is not a numeric OID like 1.3.6.1.4.1.41112.1.4.5")
        minimum = r.number(fields["min"]) if "min" in fields else None
        maximum = r.number(fields["max"]) if "max" in fields else None
        if minimum is not None and maximum is not None and minimum > maximum:
            r.problem(node, f"min ({minimum:g}) is above max ({maximum:g})")
        return CustomOid(
            name=r.identifier(fields["name"]) if "name" in fields else "",
            oid=oid.lstrip("."),
            minimum=minimum,
            maximum=maximum,
        )

    def _check_link_evidence(
        self,
        links: tuple[Link, ...],
        link_nodes: list[Node],
        *,
        devices: tuple[Device, ...],
        device_nodes: list[Node],
        site_snmp: dict[str, Node],
        path_node: Node | None,
        path: PathSpec | None = None,
    ) -> tuple[Link, ...]:
        """Check a site's links' path-bound evidence against its devices and its path.

        Return the links with each interface's router credentials resolved: the router's snmp
        probe's, or else those its `snmp`, its site's or the inventory's settings give, the
        same inheritance its own probes would get.
        """
        r = self.reader
        by_id = {device.id: device for device in devices if device.id}
        device_lines = {device.id: node for device, node in zip(devices, device_nodes, strict=True)}
        hops: dict[IPAddress, tuple[str, int]] = {}
        resolved: dict[str, Link] = {}
        for link, node in zip(links, link_nodes, strict=True):
            interface = _child(node, "interface")
            if link.interface is not None and link.interface.device and interface is not None:
                router = self._router(link.interface.device, interface, by_id)
                if router is not None:
                    credentials = next(
                        (p.credentials for p in router.probes if isinstance(p, SnmpProbe)), None
                    )
                    if credentials is None:
                        device_node = device_lines[router.id]
                        nodes = self._snmp_nodes(_child(device_node, "snmp"), site_snmp)
                        where = _child(device_node, "snmp") or _child(interface, "device")
                        credentials = self._snmp(nodes, where or interface)
                    interface_record = dataclasses.replace(link.interface, credentials=credentials)
                    resolved[link.id] = dataclasses.replace(link, interface=interface_record)
            next_hop = _child(node, "next_hop")
            if next_hop is None:
                continue
            if path_node is None:
                r.problem(
                    next_hop,
                    "needs the site's path: {toward: ADDRESS, ttl: 1}, the probe whose "
                    "answering hop it names",
                )
            for address, item in zip(link.next_hop, _list_child(node, "next_hop"), strict=False):
                if path is not None and address.version != path.toward.version:
                    r.problem(
                        item,
                        f"{address} is IPv{address.version}, the path's toward {path.toward} "
                        "is not: it could never answer the path probe",
                    )
                elif path is not None and address == path.toward:
                    r.problem(
                        item,
                        f"{address} is the path's toward: it answers the echo itself, never as "
                        "a hop on the way; aim the path further (the hub's core)",
                    )
                elif address in hops:
                    other, line = hops[address]
                    r.problem(item, f"{address} is already a next hop of {other} (line {line})")
                else:
                    hops[address] = (link.id or "another link", item.line)
        if path_node is not None and not any(link.next_hop for link in links):
            r.problem(
                path_node,
                "no link of this site gives next_hop, so the path probe could not tell "
                "which link answered: give each link's next_hop",
            )
        return tuple(resolved.get(link.id, link) for link in links)

    def _router(self, name: str, interface: Node, by_id: dict[str, Device]) -> Device | None:
        """Return the device a link's `interface` names, if it can carry a link; else say why."""
        where = _child(interface, "device") or interface
        router = by_id.get(name)
        if router is None:
            self.reader.problem(where, f"no device {name!r} at this site{suggestion(name, by_id)}")
        elif router.kind in NOT_ON_A_LINK:
            self.reader.problem(
                where,
                f"{name!r} is a {router.kind}, which no link crosses: name the router "
                "(or switch) whose interface carries the link",
            )
            return None
        return router

    # -- across the whole file --------------------------------------------------------------

    def _check_topology(self, sites: tuple[Site, ...], site_nodes: list[Node]) -> None:
        r = self.reader
        by_id = {site.id: site for site in sites if site.id}
        for site, node in zip(sites, site_nodes, strict=True):
            link_nodes = _list_child(node, "links")
            for link, link_node in zip(site.links, link_nodes, strict=False):
                to_node = _child(link_node, "to") or link_node
                if link.to != HUB and link.to and link.to != site.id and link.to not in by_id:
                    r.problem(
                        to_node,
                        f"{link.to!r} is neither hub nor a site id{suggestion(link.to, by_id)}",
                    )
                elif link.to in by_id and not by_id[link.to].monitored and site.monitored:
                    r.problem(to_node, f"leads to {link.to!r}, which is not monitored")
            if site.monitored and not site.links:
                r.problem(
                    node, "a monitored site needs at least one link (or set monitored: false)"
                )
            elif site.links and all(link.role == "backup" for link in site.links):
                r.problem(node, "has only backup links: mark its main link role: primary")
        ids = [site.id for site in sites]
        for cycle in _find_cycles(sites):
            r.problem(
                site_nodes[ids.index(cycle[0])],
                f"sites form a loop, so none of them reaches the hub: {' → '.join(cycle)}",
            )


def _override(
    record: R, fields: dict[str, Node], readers: dict[str, Callable[[Node], object]]
) -> R:
    """Return `record` with each field that `fields` gives read by its reader."""
    # Any: each reader returns its own field's type, which a dict of readers cannot express.
    changes: dict[str, Any] = {key: readers[key](node) for key, node in fields.items()}
    return dataclasses.replace(record, **changes)


def _child(node: Node, key: str) -> Node | None:
    return node.value.get(key) if isinstance(node.value, dict) else None


def _list_child(node: Node, key: str) -> list[Node]:
    child = _child(node, key)
    return list(child.value) if child is not None and isinstance(child.value, list) else []


def _find_cycles(sites: tuple[Site, ...]) -> list[list[str]]:
    """Return each loop in the graph of site → site links, as the ids along it."""
    edges = {
        site.id: sorted({link.to for link in site.links if link.to not in (HUB, site.id)})
        for site in sites
    }
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(site_id: str, path: list[str]) -> None:
        path.append(site_id)
        for target in edges.get(site_id, ()):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target in edges and target not in done:
                visit(target, path)
        path.pop()
        done.add(site_id)

    for site in sites:
        if site.id and site.id not in done:
            visit(site.id, [])
    return cycles
