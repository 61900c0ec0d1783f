"""What the path, interface and bound ping probes report, without a network: the shapes of their
values at the collector's gate, the path probe's verdict on what answered, the interface's rates,
and the ways out of this host a bound ping may take.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from probes import icmp, path
from probes.icmp import Echo, Egress
from probes.result import ProbeResult, ResultFormatError
from probes.target import Target
from sitewatch.config.model import InterfaceProbe, PathProbe, SnmpCredentials
from tests.probes.conftest import check_result

STARTED = datetime(2026, 11, 30, 12, tzinfo=UTC)
GOOD = {"target": "wv-mpls", "ts": "2026-11-30T12:00:00Z", "ok": True, "rtt_ms": None,
        "loss": None, "error_kind": None, "detail": ""}  # fmt: skip
INTERFACE = {"ifindex": 2, "ifname": "up0", "oper": "up", "admin": "up", "in_errors": 0,
             "out_errors": 0, "in_discards": 0, "out_discards": 0, "in_octets": 2**64 - 1,
             "out_octets": 5, "in_bps": 1.5, "out_bps": None, "uptime_s": 12.5}  # fmt: skip
PATH = {"toward": "10.99.0.254", "ttl": 1, "hop": "10.99.6.1", "via": "wv-mpls"}
V2C = SnmpCredentials("2c", 16161, "public", None, None, None, None, None)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("interface", INTERFACE),
        ("interface", dict.fromkeys(INTERFACE) | {"ifname": "up0"}),  # a router that said nothing
        ("interface", {}),
        ("path", PATH),
        ("path", PATH | {"hop": None, "via": None}),
    ],
)
def test_the_new_kinds_pass_the_gate(kind: str, value: dict[str, object]) -> None:
    assert ProbeResult.from_json({**GOOD, "kind": kind, "value": dict(value)}).value == value


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("interface", INTERFACE | {"oper": "sideways"}, "value.oper: must be one of up, down"),
        ("interface", INTERFACE | {"in_octets": -1}, "value.in_octets: must be between 0"),
        ("interface", INTERFACE | {"in_octets": 2**64}, "value.in_octets: must be between 0"),
        ("interface", INTERFACE | {"in_bps": float("nan")}, "value.in_bps: must be a finite"),
        ("interface", INTERFACE | {"ifindex": "2"}, "value.ifindex: must be a whole number"),
        ("interface", INTERFACE | {"uptime_s": -1}, "value.uptime_s: must be between 0"),
        ("path", {"ttl": 1}, "value.toward: is missing"),
        ("path", PATH | {"ttl": 0}, "value.ttl: must be between 1 and 255"),
        ("path", PATH | {"hop": 10}, "value.hop: must be a string"),
        ("path", PATH | {"via": ["wv-mpls"]}, "value.via: must be a string"),
    ],
)
def test_bad_shapes_of_the_new_kinds_are_refused_by_name(
    kind: str, value: dict[str, object], message: str
) -> None:
    with pytest.raises(ResultFormatError) as caught:
        ProbeResult.from_json({**GOOD, "kind": kind, "value": dict(value)})
    assert str(caught.value).startswith(message)


# -- the path probe's verdict --------------------------------------------------------------------

SPEC = PathProbe("10.99.0.254", 1, (("wv-mpls", ("10.99.6.1",)), ("wv-fibre", ("10.99.7.1",))))
EXCEEDED_MPLS = Echo(None, "unreachable", "time exceeded", source="10.99.6.1", exceeded=True)
EXCEEDED_FIBRE = Echo(None, "unreachable", "time exceeded", source="10.99.7.1", exceeded=True)
LOST = Echo(None, "timeout", "no reply in 1s")
NO_ROUTE = Echo(None, "unreachable", "cannot send: Network is unreachable")
REPLY = Echo(0.2, source="10.99.0.254")


Found = tuple[bool, str | None, str | None, str | None]  # ok, error_kind, hop, via
MPLS, FIBRE, EDGE_M, EDGE_F = "wv-mpls", "wv-fibre", "10.99.6.1", "10.99.7.1"
X_M, X_F = EXCEEDED_MPLS, EXCEEDED_FIBRE


@pytest.mark.parametrize(
    ("link", "echoes", "found"),
    [
        # probed  what came back        ok     error_kind     hop            via
        (MPLS,    [X_M, LOST, LOST],    (True,  None,          EDGE_M,        MPLS)),
        (FIBRE,   [X_M, X_M, X_M],      (False, "unexpected",  EDGE_M,        MPLS)),
        (MPLS,    [X_F, X_F, X_M],      (False, "unexpected",  EDGE_F,        FIBRE)),  # most heard
        (MPLS,    [REPLY, LOST, LOST],  (False, "unexpected",  "10.99.0.254", None)),
        (MPLS,    [LOST, LOST, LOST],   (False, "timeout",     None,          None)),
        (MPLS,    [NO_ROUTE, LOST],     (False, "unreachable", None,          None)),
    ],
)  # fmt: skip
def test_the_answering_hop_names_the_link(link: str, echoes: list[Echo], found: Found) -> None:
    result = check_result(path.judge(link, SPEC, "10.99.0.254", STARTED, echoes))
    value = result.value
    assert (result.ok, result.error_kind, value["hop"], value["via"]) == found
    assert (result.target, result.kind, result.value["ttl"]) == (link, "path", 1)


def test_a_hop_of_another_link_says_where_traffic_goes() -> None:
    result = path.judge("wv-mpls", SPEC, "10.99.0.254", STARTED, [EXCEEDED_FIBRE])
    assert result.detail == "traffic goes via wv-fibre (10.99.7.1 answered at TTL 1)"


async def test_a_path_spec_that_is_not_an_address_is_refused_clearly() -> None:
    spec = PathProbe("hub.example", 1, ())
    result = check_result(await path.probe(Target("hub.example", spec, id="wv-mpls"), timeout=1))
    assert (result.ok, result.error_kind) == (False, "protocol")
    assert result.detail == "toward 'hub.example' is not an IP address"


async def test_another_kinds_spec_is_a_bug() -> None:
    spec = InterfaceProbe(V2C, "up0", None)
    with pytest.raises(TypeError, match="path probe given a interface spec"):
        await path.probe(Target("10.0.0.1", spec), timeout=1)


# -- the ways out of this host --------------------------------------------------------------


def test_a_way_out_this_host_lacks_is_named() -> None:
    assert (
        icmp.egress(None, "no-such-if0", "10.0.0.1")
        == "no interface named no-such-if0 on this host"
    )
    assert icmp.egress("192.0.2.77", None, "10.0.0.1") == (
        "source 192.0.2.77 is not an address of this host"
    )
    assert icmp.egress("fe80::zz", None, "10.0.0.1") == "source fe80::zz is not an IP address"
    assert icmp.egress("::1", None, "10.0.0.1") == "source ::1 is IPv6, 10.0.0.1 is not"


def test_a_way_out_this_host_has_is_sent_as_ancillary_data() -> None:
    way = icmp.egress("127.0.0.1", "lo", "127.0.0.1")
    assert way == Egress(source="127.0.0.1", ifindex=socket.if_nametoindex("lo"))
    assert isinstance(way, Egress)
    [(level, name, data)] = way.ancillary(4)
    assert (level, name) == (socket.IPPROTO_IP, icmp.IP_PKTINFO)
    assert struct.unpack("@i4s4s", data) == (way.ifindex, bytes([127, 0, 0, 1]), bytes(4))
    assert Egress(ttl=2).ancillary(4) == [(socket.IPPROTO_IP, socket.IP_TTL, struct.pack("@i", 2))]
    assert Egress(ttl=2).ancillary(6) == [
        (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("@i", 2))
    ]
    assert icmp.ANY_WAY.ancillary(4) == []


# -- the interface probe's rates ---------------------------------------------------------------


def test_rates_come_from_the_previous_reading_of_the_same_interface() -> None:
    from probes import snmp  # noqa: PLC0415 -- pysnmp is heavy; only here

    target = Target("192.0.2.9", InterfaceProbe(V2C, "up0", None), id="wv-mpls")
    spec = target.spec
    assert isinstance(spec, InterfaceProbe)
    row = dict.fromkeys(snmp.IF_COLUMNS) | {"name": "up0", "oper": 1, "admin": 1}

    def reading(octets: int, uptime: float) -> dict[str, object]:
        counted = row | {"in_octets": octets, "out_octets": 2 * octets}
        return dict(snmp._row_value(target, spec, 7, counted, uptime))

    first = reading(1_000, 100.0)
    assert (first["oper"], first["in_bps"], first["out_bps"]) == ("up", None, None)
    second = reading(3_000, 110.0)
    assert (second["in_bps"], second["out_bps"]) == (1_600.0, 3_200.0)  # 2000 B in 10 s
    rebooted = reading(10, 5.0)
    assert rebooted["in_bps"] is None  # uptime went backwards: no false spike
    other = snmp._row_value(target, spec, 8, row | {"in_octets": 1}, 6.0)
    assert other["in_bps"] is None  # another interface of the router has its own history


# -- `sitewatch probe` for the new kinds --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["path", "hub.example"], "path needs an IP address to send toward, not 'hub.example'"),
        (["path", "10.99.0.254", "--ttl", "0"], "--ttl must be between 1 and 30, not 0"),
        (["path", "10.99.0.254", "--hop", "wv-mpls"], "--hop 'wv-mpls' is not LINK=ADDR[,ADDR]"),
        (["path", "10.99.0.254", "--hop", "a=10.0.0.1,x"], "--hop 'a=10.0.0.1,x' is not"),
        (["interface", "10.0.0.1"], "interface needs exactly one of --ifname and --ifindex"),
        (["interface", "10.0.0.1", "--ifname", "up0", "--ifindex", "2"], "exactly one of"),
        (["interface", "10.0.0.1", "--ifindex", "0"], "--ifindex must be between 1 and"),
    ],
)
def test_sitewatch_probe_refuses_bad_link_arguments_in_one_line(
    args: list[str], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sitewatch.cli", "probe", *args],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, "")
    [line] = done.stderr.splitlines()
    assert message in line
