"""A site's probe plan and its JSON wire form, built by the collector and run by the agent.

The collector derives each site's plan from the inventory, so an agent needs no inventory of
its own; the agent caches the JSON on disk and runs from the cache when the WAN is down. Both
sides use this module, and `plan_from_json` is the agent's gate: a plan it cannot read is
refused whole (the cached one stays in force) with the first bad field named.

A link gives the agent up to three targets, all under the link's id: the ping of its far end
(sent from the link's `source` or out of its `via` interface when the inventory says so, which
binds it to the link), the router's IF-MIB row of its `interface`, and the site's path probe
when the link names a `next_hop`. Optional wire fields that are unset are left out, so a plan
whose inventory did not change keeps its version.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from sitewatch.config.inventory import (
    MAX_IFINDEX,
    MAX_PATH_TTL,
    SNMP_KEYS,
    is_ifname,
    is_interface_name,
    is_one_host,
)
from sitewatch.config.model import (
    CustomOid,
    HttpProbe,
    IcmpProbe,
    InterfaceProbe,
    Inventory,
    Link,
    PathProbe,
    ProbeSpec,
    SipProbe,
    Site,
    SnmpCredentials,
    SnmpProbe,
    TcpProbe,
)

Role = Literal["link", "device"]
T = TypeVar("T")


class PlanFormatError(ValueError):
    """A plan on the wire is malformed; the message names the field."""


@dataclass(frozen=True, slots=True)
class PlanTarget:
    """One thing the agent probes: a link's far end or a device, with one probe kind."""

    id: str  # the link or device id from the inventory; results carry it as `target`
    role: Role
    addresses: tuple[str, ...]  # a link may have several far-end addresses: any answering is up
    spec: ProbeSpec
    interval: float  # seconds
    timeout: float  # seconds


@dataclass(frozen=True, slots=True)
class Plan:
    """What one site's agent runs."""

    site: str
    version: str  # a digest of the content; the collector's ETag
    targets: tuple[PlanTarget, ...]


def build_plan(inventory: Inventory, site_id: str) -> Plan:
    """Return the plan of one site: its links' far ends, interfaces and path, and its devices."""
    site = inventory.site(site_id)
    targets: list[PlanTarget] = []
    for link in site.links:
        targets.extend(_link_targets(inventory, site, link))
    for device in site.devices:
        timing = device.thresholds
        for spec in device.probes:
            targets.append(
                PlanTarget(
                    device.id,
                    "device",
                    (device.address,),
                    spec,
                    timing.interval.total_seconds(),
                    timing.timeout.total_seconds(),
                )
            )
    body = [_target_json(t) for t in targets]
    version = hashlib.sha256(json.dumps([site.id, body], sort_keys=True).encode()).hexdigest()
    return Plan(site.id, version[:32], tuple(targets))


def _link_targets(inventory: Inventory, site: Site, link: Link) -> list[PlanTarget]:
    """Return what the agent probes for one link, each target carrying the link's id."""
    interval = link.thresholds.interval.total_seconds()
    timeout = link.thresholds.timeout.total_seconds()
    targets: list[PlanTarget] = []
    if link.probe:
        ping = IcmpProbe(source=str(link.source) if link.source else None, via=link.via)
        addresses = tuple(str(address) for address in link.probe)
        targets.append(PlanTarget(link.id, "link", addresses, ping, interval, timeout))
    if link.interface is not None:
        router = next(d for d in site.devices if d.id == link.interface.device)
        credentials = link.interface.credentials or inventory.snmp
        spec = InterfaceProbe(credentials, link.interface.ifname, link.interface.ifindex)
        targets.append(PlanTarget(link.id, "link", (router.address,), spec, interval, timeout))
    if link.next_hop and site.path is not None:
        hops = tuple(
            (other.id, tuple(str(hop) for hop in other.next_hop))
            for other in site.links
            if other.next_hop
        )
        toward = str(site.path.toward)
        spec_path = PathProbe(toward, site.path.ttl, hops)
        targets.append(PlanTarget(link.id, "link", (toward,), spec_path, interval, timeout))
    return targets


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """Return the wire form of a plan."""
    return {
        "site": plan.site,
        "version": plan.version,
        "targets": [_target_json(t) for t in plan.targets],
    }


def plan_from_json(data: object) -> Plan:
    """Return the plan in a decoded JSON object, or raise PlanFormatError."""
    body = _object(data, "plan")
    targets = body.get("targets")
    if not isinstance(targets, list):
        raise PlanFormatError("targets: must be a list")
    return Plan(
        _string(body, "site"),
        _string(body, "version"),
        tuple(_target(item, f"targets[{i}]") for i, item in enumerate(targets)),
    )


def _target_json(target: PlanTarget) -> dict[str, Any]:
    return {
        "id": target.id,
        "role": target.role,
        "addresses": list(target.addresses),
        "interval": target.interval,
        "timeout": target.timeout,
        "spec": _spec_json(target.spec),
    }


def _spec_json(spec: ProbeSpec) -> dict[str, Any]:
    if isinstance(spec, IcmpProbe):
        ping: dict[str, Any] = {"kind": "icmp", "count": spec.count, "interval": spec.interval}
        if spec.source is not None:
            ping["source"] = spec.source
        if spec.via is not None:
            ping["via"] = spec.via
        return ping
    if isinstance(spec, TcpProbe):
        return {"kind": "tcp", "port": spec.port}
    if isinstance(spec, HttpProbe):
        return {
            "kind": "http",
            "url": spec.url,
            "expect_status": spec.expect_status,
            "expect_body": spec.expect_body,
            "ca_file": str(spec.ca_file) if spec.ca_file else None,
            "verify_tls": spec.verify_tls,
        }
    if isinstance(spec, SnmpProbe):
        return {
            "kind": "snmp",
            "profile": spec.profile,
            "credentials": _credentials_json(spec.credentials),
            "oids": [
                {"name": o.name, "oid": o.oid, "min": o.minimum, "max": o.maximum}
                for o in spec.oids
            ],
        }
    if isinstance(spec, InterfaceProbe):
        return {
            "kind": "interface",
            "credentials": _credentials_json(spec.credentials),
            "ifname": spec.ifname,
            "ifindex": spec.ifindex,
        }
    if isinstance(spec, PathProbe):
        return {
            "kind": "path",
            "toward": spec.toward,
            "ttl": spec.ttl,
            "hops": [[link_id, list(hops)] for link_id, hops in spec.hops],
        }
    return {"kind": "sip", "port": spec.port, "transport": spec.transport}


def _credentials_json(c: SnmpCredentials) -> dict[str, Any]:
    return {
        "version": c.version,
        "port": c.port,
        "community": c.community,
        "user": c.user,
        "auth_protocol": c.auth_protocol,
        "auth_password": c.auth_password,
        "priv_protocol": c.priv_protocol,
        "priv_password": c.priv_password,
        "context": c.context,
    }


def _target(data: object, where: str) -> PlanTarget:
    body = _object(data, where)
    role = body.get("role")
    if role not in ("link", "device"):
        raise PlanFormatError(f"{where}.role: must be link or device")
    addresses = body.get("addresses")
    if (
        not isinstance(addresses, list)
        or not addresses
        or not all(isinstance(a, str) and a for a in addresses)
    ):
        raise PlanFormatError(f"{where}.addresses: must be a list of addresses")
    return PlanTarget(
        _string(body, "id", where),
        role,
        tuple(addresses),
        _spec(body.get("spec"), f"{where}.spec"),
        _seconds(body, "interval", where),
        _seconds(body, "timeout", where),
    )


def _spec(data: object, where: str) -> ProbeSpec:
    body = _object(data, where)
    kind = body.get("kind")
    try:
        if kind == "icmp":
            return IcmpProbe(
                _int(body, "count", where),
                _number(body, "interval", where),
                source=_optional_address(body, "source", where),
                via=_optional_interface(body, "via", where),
            )
        if kind == "tcp":
            return TcpProbe(_int(body, "port", where))
        if kind == "http":
            ca_file = _optional(body, "ca_file", str, where)
            return HttpProbe(
                _string(body, "url", where),
                _optional(body, "expect_status", int, where),
                _optional(body, "expect_body", str, where),
                Path(ca_file) if ca_file else None,
                bool(body.get("verify_tls", True)),
            )
        if kind == "snmp":
            return _snmp(body, where)
        if kind == "sip":
            transport = body.get("transport")
            if transport not in ("udp", "tcp"):
                raise PlanFormatError(f"{where}.transport: must be udp or tcp")
            return SipProbe(_int(body, "port", where), transport)
        if kind == "interface":
            return _interface(body, where)
        if kind == "path":
            return _path(body, where)
    except KeyError as err:
        raise PlanFormatError(f"{where}.{err.args[0]}: missing") from err
    raise PlanFormatError(f"{where}.kind: {kind!r} is not a probe kind")


def _interface(body: Mapping[str, Any], where: str) -> InterfaceProbe:
    ifname = _optional(body, "ifname", str, where)
    ifindex = _optional(body, "ifindex", int, where)
    if (ifname is None) == (ifindex is None):
        raise PlanFormatError(f"{where}.ifname: give exactly one of ifname and ifindex")
    if ifname == "":
        raise PlanFormatError(f"{where}.ifname: must be non-empty text or null")
    if ifname is not None and not is_ifname(ifname):
        raise PlanFormatError(f"{where}.ifname: {ifname[:40]!r} is not an ifName")
    if ifindex is not None and not 1 <= ifindex <= MAX_IFINDEX:
        raise PlanFormatError(f"{where}.ifindex: must be between 1 and {MAX_IFINDEX}")
    return InterfaceProbe(_credentials(body, where), ifname, ifindex)


def _path(body: Mapping[str, Any], where: str) -> PathProbe:
    toward = _address(body, "toward", where)
    if not is_one_host(ipaddress.ip_address(toward)):
        raise PlanFormatError(f"{where}.toward: {toward} is not one host to aim at")
    ttl = _int(body, "ttl", where)
    if not 1 <= ttl <= MAX_PATH_TTL:
        raise PlanFormatError(f"{where}.ttl: must be between 1 and {MAX_PATH_TTL}")
    hops = body.get("hops")
    if not isinstance(hops, list) or not hops:
        raise PlanFormatError(f"{where}.hops: must be a non-empty list of [link id, [address...]]")
    links: list[tuple[str, tuple[str, ...]]] = []
    named: dict[str, str] = {}  # address -> the link it names: one answer, one link
    family = ipaddress.ip_address(toward).version
    for i, item in enumerate(hops):
        here = f"{where}.hops[{i}]"
        if not isinstance(item, list) or len(item) != 2:
            raise PlanFormatError(f"{here}: must be [link id, [address...]]")
        link_id, addresses = item
        if not isinstance(link_id, str) or not link_id:
            raise PlanFormatError(f"{here}[0]: must be a link id")
        if not isinstance(addresses, list) or not addresses:
            raise PlanFormatError(f"{here}[1]: must be a non-empty list of addresses")
        found = tuple(_ip(a, f"{here}[1][{j}]") for j, a in enumerate(addresses))
        for j, address in enumerate(found):
            canonical = ipaddress.ip_address(address)
            if canonical.version != family:
                raise PlanFormatError(
                    f"{here}[1][{j}]: {address} is IPv{canonical.version}, toward is not"
                )
            if not is_one_host(canonical) or canonical == ipaddress.ip_address(toward):
                raise PlanFormatError(
                    f"{here}[1][{j}]: {address} cannot answer as a hop (one host, not toward)"
                )
            if named.setdefault(str(canonical), link_id) != link_id:
                raise PlanFormatError(
                    f"{here}[1][{j}]: {address} is already a hop of {named[str(canonical)]}"
                )
        links.append((link_id, found))
    return PathProbe(toward, ttl, tuple(links))


def _snmp(body: Mapping[str, Any], where: str) -> SnmpProbe:
    return SnmpProbe(_string(body, "profile", where), _credentials(body, where), _oids(body, where))


def _credentials(body: Mapping[str, Any], where: str) -> SnmpCredentials:
    here = f"{where}.credentials"
    creds = _object(body.get("credentials"), here)
    version = creds.get("version")
    if version not in ("1", "2c", "3"):
        raise PlanFormatError(f"{here}.version: must be 1, 2c or 3")
    text = {key: _optional(creds, key, str, here) for key in SNMP_KEYS[2:]}  # the text ones
    return SnmpCredentials(
        version,
        _int(creds, "port", here),
        text["community"],
        text["user"],
        text["auth_protocol"],
        text["auth_password"],
        text["priv_protocol"],
        text["priv_password"],
        text["context"] or "",
    )


def _oids(body: Mapping[str, Any], where: str) -> tuple[CustomOid, ...]:
    oids = body.get("oids", [])
    if not isinstance(oids, list):
        raise PlanFormatError(f"{where}.oids: must be a list")
    custom = []
    for i, item in enumerate(oids):
        oid = _object(item, f"{where}.oids[{i}]")
        custom.append(
            CustomOid(
                _string(oid, "name", f"{where}.oids[{i}]"),
                _string(oid, "oid", f"{where}.oids[{i}]"),
                _optional(oid, "min", float, f"{where}.oids[{i}]"),
                _optional(oid, "max", float, f"{where}.oids[{i}]"),
            )
        )
    return tuple(custom)


def _object(data: object, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise PlanFormatError(f"{where}: must be an object")
    return data


def _string(body: Mapping[str, Any], key: str, where: str = "") -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise PlanFormatError(f"{where + '.' if where else ''}{key}: must be non-empty text")
    return value


def _int(body: Mapping[str, Any], key: str, where: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlanFormatError(f"{where}.{key}: must be a whole number")
    return value


def _number(body: Mapping[str, Any], key: str, where: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlanFormatError(f"{where}.{key}: must be a number")
    return float(value)


def _seconds(body: Mapping[str, Any], key: str, where: str) -> float:
    value = _number(body, key, where)
    if not 0 < value <= 86_400:
        raise PlanFormatError(f"{where}.{key}: must be between 0 and 86400 seconds")
    return value


def _ip(value: object, where: str) -> str:
    """Return `value` if it is the text of an IP address (as the agent will use it)."""
    if not isinstance(value, str):
        raise PlanFormatError(f"{where}: must be an IP address")
    try:
        ipaddress.ip_address(value)
    except ValueError as err:
        raise PlanFormatError(f"{where}: {value!r} is not an IP address") from err
    return value


def _address(body: Mapping[str, Any], key: str, where: str) -> str:
    return _ip(body.get(key), f"{where}.{key}")


def _optional_address(body: Mapping[str, Any], key: str, where: str) -> str | None:
    if body.get(key) is None:
        return None
    address = _address(body, key, where)
    if not is_one_host(ipaddress.ip_address(address)):  # e.g. 0.0.0.0: it leaves by any path
        raise PlanFormatError(f"{where}.{key}: {address} is not one address of this host")
    return address


def _optional_interface(body: Mapping[str, Any], key: str, where: str) -> str | None:
    name = _optional(body, key, str, where)
    if name is not None and not is_interface_name(name):
        raise PlanFormatError(f"{where}.{key}: {name!r} is not an interface name")
    return name


def _optional(body: Mapping[str, Any], key: str, kind: type[T], where: str) -> T | None:
    value = body.get(key)
    if value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return kind(value)  # type: ignore[call-arg]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PlanFormatError(f"{where}.{key}: must be {kind.__name__} or null")
    return value
