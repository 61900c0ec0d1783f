"""`sitewatch probe KIND TARGET`: run one probe now from this host and print what it found.

The arguments become the same probe specs the inventory produces, so a probe run by hand
behaves exactly like the agent's. Bad arguments exit 2 with one line; a probe that ran exits 0
whatever it found, because the finding is the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
from pathlib import Path
from typing import Any, cast

from probes import PROBES, ProbeFn, Target
from probes import close as close_probes
from probes.result import ProbeResult
from probes.target import HostProbe
from sitewatch.config.inventory import is_ifname, is_interface_name, is_one_host
from sitewatch.config.model import (
    SNMP_PROFILES,
    CustomOid,
    HttpProbe,
    IcmpProbe,
    InterfaceProbe,
    PathProbe,
    ProbeSpec,
    SipProbe,
    SnmpCredentials,
    SnmpProbe,
    SnmpVersion,
    TcpProbe,
)
from sitewatch.config.reader import normalise_host

KINDS = ("icmp", "tcp", "http", "snmp", "sip", "host", "interface", "path")
AUTH_PROTOCOLS = ("md5", "sha", "sha224", "sha256", "sha384", "sha512")
PRIV_PROTOCOLS = ("des", "3des", "aes", "aes128", "aes192", "aes256")


class UsageError(Exception):
    """The arguments cannot make a probe; the message says which one is wrong."""


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the `probe` subcommand to the command line."""
    parser = commands.add_parser(
        "probe",
        help="run one probe now from this host and print the result",
        description=(
            "Run one probe from this host and print the result; --json prints the result "
            "record. TARGET is an IP address or host name (for http a URL, for host the "
            "directory whose disk to watch, for interface the router, for path the address "
            "to send toward). Exit 0 when the probe ran, whatever it found; 2 for bad "
            "arguments."
        ),
    )
    parser.add_argument("kind", choices=KINDS, metavar="KIND", help=", ".join(KINDS))
    parser.add_argument("target", metavar="TARGET")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    parser.add_argument("--json", action="store_true", help="print the result record as JSON")
    parser.add_argument("--count", type=int, default=3, help="icmp: echo requests (default 3)")
    parser.add_argument(
        "--interval", type=float, default=0.2, help="icmp: seconds between requests"
    )
    parser.add_argument("--port", type=int, help="tcp (required), snmp (161), sip (5060)")
    parser.add_argument("--expect-status", type=int, help="http: the status to expect")
    parser.add_argument("--expect-body", help="http: text the body must contain")
    parser.add_argument("--ca-file", type=Path, help="https: trust this CA bundle")
    parser.add_argument(
        "--insecure", action="store_true", help="https: do not verify the certificate"
    )
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp", help="sip")
    parser.add_argument("--source", help="icmp: send from this address of this host")
    parser.add_argument("--via", help="icmp: send out of this interface of this host")
    link = parser.add_argument_group("interface and path: evidence for one link")
    link.add_argument("--link", default="", help="the link id the result is for")
    link.add_argument("--ifname", help="interface: the router's IF-MIB ifName")
    link.add_argument("--ifindex", type=int, help="interface: ... or its ifIndex")
    link.add_argument("--ttl", type=int, default=1, help="path: hops out (default 1)")
    link.add_argument(
        "--hop",
        action="append",
        default=[],
        metavar="LINK=ADDR[,ADDR]",
        help="path: a link's next hop(s), to name the link that answers (repeat for more)",
    )
    snmp = parser.add_argument_group("snmp")
    snmp.add_argument("--profile", choices=SNMP_PROFILES, default="system")
    snmp.add_argument("--snmp-version", choices=("1", "2c", "3"), default="2c")
    snmp.add_argument("--community", default="public", help="v1/v2c (default public)")
    snmp.add_argument("--user", help="v3 user")
    snmp.add_argument("--auth-protocol", choices=AUTH_PROTOCOLS)
    snmp.add_argument("--auth-password")
    snmp.add_argument("--priv-protocol", choices=PRIV_PROTOCOLS)
    snmp.add_argument("--priv-password")
    snmp.add_argument("--context", default="", help="v3 context name (default empty)")
    snmp.add_argument(
        "--oid",
        action="append",
        default=[],
        metavar="NAME=OID[:MIN:MAX]",
        help="custom profile: an OID to read (repeat for more)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the probe the arguments describe and print its result."""
    try:
        target = build_target(args)
    except UsageError as err:
        print(f"sitewatch probe: {err}", file=sys.stderr)
        return 2
    probe = PROBES.get(args.kind)
    if probe is None:
        print(f"sitewatch probe: {args.kind} probes are not available yet", file=sys.stderr)
        return 2
    result = asyncio.run(_run_once(probe, target, args.timeout))
    print(json.dumps(result.to_json()) if args.json else describe(result))
    return 0


async def _run_once(probe: ProbeFn, target: Target, timeout: float) -> ProbeResult:
    try:
        return await probe(target, timeout=timeout)
    finally:
        close_probes()


def build_target(args: argparse.Namespace) -> Target:
    """Return the target the arguments describe, or raise UsageError."""
    if not 0 < args.timeout <= 300:
        raise UsageError(f"--timeout must be between 0 and 300 seconds, not {args.timeout}")
    if args.port is not None and not 0 < args.port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, not {args.port}")
    kind: str = args.kind
    if kind == "host":
        path = Path(args.target)
        if not path.is_dir():
            raise UsageError(f"{args.target!r} is not a directory (host takes the state dir)")
        return Target("localhost", HostProbe(path=path))
    if kind == "http":
        url: str = args.target
        if "://" not in url:
            url = f"http://{_host(url)}/"
        elif not url.startswith(("http://", "https://")):
            raise UsageError(f"{url!r} is not an http:// or https:// URL")
        spec: ProbeSpec = HttpProbe(
            url=url,
            expect_status=args.expect_status,
            expect_body=args.expect_body,
            ca_file=args.ca_file,
            verify_tls=not args.insecure,
        )
        return Target(url, spec)
    if kind != "icmp" and (args.source is not None or args.via is not None):
        raise UsageError(f"--source and --via apply to icmp only, not {kind}")
    host = _host(args.target)
    if kind in ("path", "interface"):
        return _link_target(kind, host, args)
    return Target(host, _address_spec(kind, args))


def _link_target(kind: str, host: str, args: argparse.Namespace) -> Target:
    """Return the target of a probe that is evidence for one link: path or interface."""
    if kind == "path":
        if ipaddress_or_none(host) is None:
            raise UsageError(f"path needs an IP address to send toward, not {args.target!r}")
        if not 1 <= args.ttl <= 30:
            raise UsageError(f"--ttl must be between 1 and 30, not {args.ttl}")
        return Target(host, PathProbe(host, args.ttl, _hops(args.hop, host)), id=args.link)
    if (args.ifname is None) == (args.ifindex is None):
        raise UsageError("interface needs exactly one of --ifname and --ifindex")
    if args.ifname is not None and not is_ifname(args.ifname):
        raise UsageError(f"--ifname {args.ifname[:40]!r} is not an ifName: one printable line")
    if args.ifindex is not None and not 1 <= args.ifindex < 2**31:
        raise UsageError(f"--ifindex must be between 1 and 2147483647, not {args.ifindex}")
    spec = InterfaceProbe(_credentials(args), args.ifname, args.ifindex)
    return Target(host, spec, id=args.link)


def ipaddress_or_none(text: str) -> str | None:
    """Return `text` as a canonical IP address, or None for a host name."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _hops(texts: list[str], toward: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Return each --hop's link and addresses: each address names one link, of toward's family."""
    hops = []
    named: dict[str, str] = {}
    family = ipaddress.ip_address(toward).version
    for text in texts:
        link, sep, rest = text.partition("=")
        addresses = tuple(ipaddress_or_none(part) or "" for part in rest.split(","))
        if not sep or not link or not all(addresses):
            raise UsageError(f"--hop {text!r} is not LINK=ADDR[,ADDR] like wv-mpls=10.99.6.1")
        for address in addresses:
            if ipaddress.ip_address(address).version != family:
                raise UsageError(f"--hop {text!r}: {address} is not of {toward}'s IP family")
            if named.setdefault(address, link) != link:
                raise UsageError(f"--hop {text!r}: {address} is already a hop of {named[address]}")
        hops.append((link, addresses))
    return tuple(hops)


def _address_spec(kind: str, args: argparse.Namespace) -> ProbeSpec:
    """Return the spec of a probe aimed at an address: icmp, tcp, sip or snmp."""
    spec: ProbeSpec
    if kind == "icmp":
        if not 1 <= args.count <= 100:
            raise UsageError(f"--count must be between 1 and 100, not {args.count}")
        source = ipaddress_or_none(args.source) if args.source is not None else None
        if args.source is not None and (
            source is None or not is_one_host(ipaddress.ip_address(source))
        ):
            raise UsageError(f"--source {args.source!r} is not an IP address of this host")
        if args.via is not None and not is_interface_name(args.via):
            raise UsageError(
                f"--via {args.via!r} is not an interface name: 1 to 15 bytes, no '/', ':', "
                "spaces or control characters"
            )
        spec = IcmpProbe(count=args.count, interval=args.interval, source=args.source, via=args.via)
    elif kind == "tcp":
        if args.port is None:
            raise UsageError("tcp needs --port")
        spec = TcpProbe(port=args.port)
    elif kind == "sip":
        spec = SipProbe(port=args.port or 5060, transport=args.transport)
    else:
        spec = SnmpProbe(profile=args.profile, credentials=_credentials(args), oids=_oids(args))
    return spec


def describe(result: ProbeResult) -> str:
    """Return a result as a few lines for a person at a terminal."""
    head = f"{result.kind} {result.target}: "
    head += "ok" if result.ok else f"FAILED ({result.error_kind}: {result.detail})"
    if result.rtt_ms is not None:
        head += f"  rtt {result.rtt_ms:.3f} ms"
    if result.loss is not None:
        head += f"  loss {result.loss:.0%}"
    lines = [head]
    for key, value in result.value.items():
        shown = value if isinstance(value, str | int | float) else json.dumps(value)
        lines.append(f"  {key}: {shown}")
    if result.ok and result.detail:
        lines.append(f"  note: {result.detail}")
    return "\n".join(lines)


def _host(text: str) -> str:
    host = normalise_host(text)
    if host is None:
        raise UsageError(f"{text!r} is not a valid IP address or host name")
    return host


def _credentials(args: argparse.Namespace) -> SnmpCredentials:
    port = args.port or 161
    version = cast("SnmpVersion", args.snmp_version)
    if version != "3":
        return SnmpCredentials(version, port, args.community, None, None, None, None, None)
    if not args.user:
        raise UsageError("SNMP version 3 needs --user")
    for protocol, password in (("auth", args.auth_password), ("priv", args.priv_password)):
        if getattr(args, f"{protocol}_protocol") and not password:
            raise UsageError(f"--{protocol}-protocol needs --{protocol}-password")
        if password is not None and len(password) < 8:
            raise UsageError(f"--{protocol}-password must be at least 8 characters")
    if args.priv_protocol and not args.auth_protocol:
        raise UsageError("--priv-protocol needs --auth-protocol too")
    return SnmpCredentials(
        "3", port, None, args.user, args.auth_protocol, args.auth_password,
        args.priv_protocol, args.priv_password, args.context,
    )  # fmt: skip


def _oids(args: argparse.Namespace) -> tuple[CustomOid, ...]:
    if args.profile != "custom":
        if args.oid:
            raise UsageError("--oid applies only to --profile custom")
        return ()
    if not args.oid:
        raise UsageError("--profile custom needs at least one --oid NAME=OID")
    oids = []
    for text in args.oid:
        name, sep, rest = text.partition("=")
        oid, *limits = rest.split(":")
        parts = oid.lstrip(".").split(".")
        if not sep or not name or len(parts) < 2 or not all(p.isdigit() for p in parts):
            raise UsageError(f"--oid {text!r} is not NAME=OID like signal=1.3.6.1.4.1.41112.1.4")
        try:
            bounds = [float(limit) if limit else None for limit in limits]
        except ValueError:
            raise UsageError(f"--oid {text!r}: MIN and MAX must be numbers") from None
        if len(bounds) > 2:
            raise UsageError(f"--oid {text!r}: give at most NAME=OID:MIN:MAX")
        bounds += [None] * (2 - len(bounds))
        oids.append(CustomOid(name, oid.lstrip("."), bounds[0], bounds[1]))
    return tuple(oids)
