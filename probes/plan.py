"""A site's probe plan and its JSON wire form, built by the collector and run by the agent.

The collector derives each site's plan from the inventory, so an agent needs no inventory of
its own; the agent caches the JSON on disk and runs from the cache when the WAN is down. Both
sides use this module, and `plan_from_json` is the agent's gate: a plan it cannot read is
refused whole (the cached one stays in force) with the first bad field named.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from sitewatch.config.inventory import SNMP_KEYS
from sitewatch.config.model import (
    CustomOid,
    HttpProbe,
    IcmpProbe,
    Inventory,
    ProbeSpec,
    SipProbe,
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
    """Return the plan of one site: its links' far ends (ICMP) and its devices' probes."""
    site = inventory.site(site_id)
    targets: list[PlanTarget] = []
    for link in site.links:
        if link.probe:
            timing = link.thresholds
            targets.append(
                PlanTarget(
                    link.id,
                    "link",
                    tuple(str(address) for address in link.probe),
                    IcmpProbe(),
                    timing.interval.total_seconds(),
                    timing.timeout.total_seconds(),
                )
            )
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
        return {"kind": "icmp", "count": spec.count, "interval": spec.interval}
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
        c = spec.credentials
        return {
            "kind": "snmp",
            "profile": spec.profile,
            "credentials": {
                "version": c.version,
                "port": c.port,
                "community": c.community,
                "user": c.user,
                "auth_protocol": c.auth_protocol,
                "auth_password": c.auth_password,
                "priv_protocol": c.priv_protocol,
                "priv_password": c.priv_password,
                "context": c.context,
            },
            "oids": [
                {"name": o.name, "oid": o.oid, "min": o.minimum, "max": o.maximum}
                for o in spec.oids
            ],
        }
    return {"kind": "sip", "port": spec.port, "transport": spec.transport}


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
            return IcmpProbe(_int(body, "count", where), _number(body, "interval", where))
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
    except KeyError as err:
        raise PlanFormatError(f"{where}.{err.args[0]}: missing") from err
    raise PlanFormatError(f"{where}.kind: {kind!r} is not a probe kind")


def _snmp(body: Mapping[str, Any], where: str) -> SnmpProbe:
    creds = _object(body.get("credentials"), f"{where}.credentials")
    here = f"{where}.credentials"
    version = creds.get("version")
    if version not in ("1", "2c", "3"):
        raise PlanFormatError(f"{here}.version: must be 1, 2c or 3")
    text = {key: _optional(creds, key, str, here) for key in SNMP_KEYS[2:]}  # the text ones
    credentials = SnmpCredentials(
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
    return SnmpProbe(_string(body, "profile", where), credentials, tuple(custom))


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


def _optional(body: Mapping[str, Any], key: str, kind: type[T], where: str) -> T | None:
    value = body.get(key)
    if value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return kind(value)  # type: ignore[call-arg]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PlanFormatError(f"{where}.{key}: must be {kind.__name__} or null")
    return value
