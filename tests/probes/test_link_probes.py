"""Probes that tell a site's links apart, run in a two-link site the tests build themselves.

The path probe names the link whose next hop answers; a ping bound to the primary's address
fails once the primary is cut, while an unbound one goes on answering over the backup; the
router's IF-MIB row, read from a real snmpd, follows the interface down.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.result import ProbeResult
from probes.target import Target
from sitewatch.config.model import (
    IcmpProbe,
    InterfaceProbe,
    PathProbe,
    SnmpCredentials,
)
from tests.probes.linknet import (
    BACKUP,
    CORE,
    PRIMARY,
    ROUTER,
    LinkNet,
    need_namespaces,
    run,
    wait_for,
)

pytestmark = pytest.mark.lab

V2C = SnmpCredentials("2c", 161, "public", None, None, None, None, None)
SNMP_TOOLS = ("/usr/sbin/snmpd", "snmpget", "snmpset")
HOPS = ((PRIMARY[0], (PRIMARY[4],)), (BACKUP[0], (BACKUP[4],)))


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LinkNet]:
    """The site, hub and core namespaces, removed after the test whatever happened."""
    need_namespaces()
    built = LinkNet(tmp_path)
    try:
        built.up()
        yield built
    finally:
        built.down()


def path_target(
    link: str, ttl: int = 1, hops: tuple[tuple[str, tuple[str, ...]], ...] = HOPS
) -> Target:
    return Target(CORE, PathProbe(CORE, ttl, hops), id=link)


def time_exceeded_sent(net: LinkNet) -> int:
    """Return how many ICMP "time exceeded" the hub has sent since its namespace was made."""
    done = run(["ip", "netns", "exec", net.hub, "nstat", "-az", "--json", "IcmpOutTimeExcds"])
    counters: dict[str, dict[str, int]] = json.loads(done.stdout)
    return next(iter(counters.values())).get("IcmpOutTimeExcds", 0)


def ping(address: str, *, source: str | None = None, via: str | None = None) -> Target:
    return Target(address, IcmpProbe(count=2, interval=0.05, source=source, via=via), id="far")


def test_the_path_probe_names_the_link_in_use_before_and_after_a_failover(net: LinkNet) -> None:
    primary, backup = net.probe([path_target(PRIMARY[0]), path_target(BACKUP[0])])
    assert (primary.ok, primary.value) == (
        True,
        {"toward": CORE, "ttl": 1, "hop": PRIMARY[4], "via": PRIMARY[0]},
    )
    assert primary.target == PRIMARY[0]
    assert (backup.ok, backup.error_kind) == (False, "unexpected")
    assert backup.detail == f"traffic goes via {PRIMARY[0]} ({PRIMARY[4]} answered at TTL 1)"

    net.cut_primary()
    primary, backup = net.probe([path_target(PRIMARY[0]), path_target(BACKUP[0])])
    assert (backup.ok, backup.value["hop"], backup.value["via"]) == (True, BACKUP[4], BACKUP[0])
    assert (primary.ok, primary.error_kind, primary.value["via"]) == (
        False,
        "unexpected",
        BACKUP[0],
    )
    assert primary.detail == f"traffic goes via {BACKUP[0]} ({BACKUP[4]} answered at TTL 1)"


def test_a_hop_of_no_link_or_the_target_itself_is_no_evidence(net: LinkNet) -> None:
    unknown, reached = net.probe(
        [
            path_target(PRIMARY[0], hops=((PRIMARY[0], ("192.0.2.1",)),)),
            path_target(PRIMARY[0], ttl=5),
        ]
    )
    assert (unknown.ok, unknown.error_kind) == (False, "unexpected")
    assert (unknown.value["hop"], unknown.value["via"]) == (PRIMARY[4], None)
    assert "the next hop of no link" in unknown.detail
    assert (reached.ok, reached.error_kind) == (False, "unexpected")
    assert (reached.value["hop"], reached.value["via"]) == (CORE, None)
    assert "raise the path's ttl" in reached.detail


def test_without_raw_sockets_the_error_queue_names_the_hop(net: LinkNet) -> None:
    need_namespaces("setpriv")
    before = net.probe([path_target(PRIMARY[0]), ping(PRIMARY[4], source=PRIMARY[3])],
                       unprivileged=True)  # fmt: skip
    net.cut_primary()
    after = net.probe([path_target(PRIMARY[0]), ping(PRIMARY[4], source=PRIMARY[3])],
                      unprivileged=True)  # fmt: skip
    assert [(r.ok, r.error_kind) for r in before] == [(True, None), (True, None)]
    assert (after[0].ok, after[0].value["via"]) == (False, BACKUP[0])
    assert (after[1].ok, after[1].loss) == (False, 1.0)


def test_no_route_toward_the_hub_is_unreachable(net: LinkNet) -> None:
    net.cut_primary()
    net.ip(net.site, "link", "set", BACKUP[1], "down")
    [result] = net.probe([path_target(PRIMARY[0])])
    assert (result.ok, result.error_kind) == (False, "unreachable")
    assert (result.value["hop"], result.value["via"]) == (None, None)


def test_a_ping_bound_to_the_primary_fails_when_it_is_cut_and_an_unbound_one_does_not(
    net: LinkNet,
) -> None:
    hub = PRIMARY[4]
    bound_source, bound_via, unbound = net.probe(
        [ping(hub, source=PRIMARY[3]), ping(hub, via=PRIMARY[1]), ping(hub)]
    )
    assert [bound_source.ok, bound_via.ok, unbound.ok] == [True, True, True]
    # a bound ping's result says how it went out: the collector counts it as bound only then
    assert bound_source.value["source"] == PRIMARY[3]
    assert bound_via.value["via"] == PRIMARY[1]
    assert "source" not in unbound.value
    assert "via" not in unbound.value

    net.cut_primary()
    bound_source, bound_via, unbound = net.probe(
        [ping(hub, source=PRIMARY[3]), ping(hub, via=PRIMARY[1]), ping(hub)]
    )
    assert unbound.ok, unbound.detail  # the backup carries it: reachability, nothing more
    assert (bound_source.ok, bound_source.loss) == (False, 1.0)
    assert (bound_via.ok, bound_via.error_kind) == (False, "unreachable")
    assert "cannot send" in bound_via.detail


def test_a_source_or_interface_this_host_lacks_is_a_clear_failure(net: LinkNet) -> None:
    foreign, unknown_if, wrong_family = net.probe(
        [
            ping(PRIMARY[4], source="10.231.6.99"),
            ping(PRIMARY[4], via="up9"),
            ping(PRIMARY[4], source="2001:db8::1"),
        ]
    )
    hub = PRIMARY[4]
    assert (foreign.ok, foreign.error_kind, foreign.loss) == (False, "unreachable", 1.0)
    assert foreign.detail == f"{hub}: source 10.231.6.99 is not an address of this host"
    assert (unknown_if.ok, unknown_if.error_kind) == (False, "unreachable")
    assert unknown_if.detail == f"{hub}: no interface named up9 on this host"
    assert wrong_family.detail == f"{hub}: source 2001:db8::1 is IPv6, {hub} is not"
    assert foreign.value == {"address": hub, "sent": 0, "received": 0}


def interface(ifname: str | None = None, ifindex: int | None = None) -> Target:
    return Target(ROUTER, InterfaceProbe(V2C, ifname, ifindex), id=PRIMARY[0])


def test_the_routers_if_mib_row_follows_the_interface_down(net: LinkNet) -> None:
    need_namespaces(*SNMP_TOOLS)
    net.start_snmpd()
    net.lower_if_cache(1)
    index = int(net.ip(net.site, "-o", "link", "show", PRIMARY[1]).split(":")[0])
    first, second, by_index = net.probe(
        [interface("up0"), interface("up0"), interface(None, index)], gap=0.1
    )
    assert first.ok, first.detail
    assert first.target == PRIMARY[0]
    value = first.value
    assert (value["ifname"], value["ifindex"], value["oper"], value["admin"]) == (
        "up0",
        index,
        "up",
        "up",
    )
    assert isinstance(value["in_octets"], int)
    assert isinstance(value["uptime_s"], float)
    assert (value["in_bps"], value["out_bps"]) == (None, None)  # the first reading has no rate
    assert second.ok
    assert isinstance(second.value["in_bps"], float)  # from the first reading, same process
    assert (by_index.ok, by_index.value["ifname"]) == (True, "up0")

    net.cut_primary()

    def reads_down() -> bool:
        [result] = net.probe([interface("up0")])
        return result.value["oper"] == "down"

    wait_for(reads_down, 15, "snmpd reading up0 down")
    [down] = net.probe([interface("up0")])
    assert (down.ok, down.error_kind) == (False, "unexpected")
    assert down.detail == f"up0 (ifIndex {index}) is down, admin down"


def test_an_interface_the_router_lacks_is_a_protocol_failure(net: LinkNet) -> None:
    need_namespaces(*SNMP_TOOLS)
    net.start_snmpd()
    named, numbered = net.probe([interface("up7"), interface(None, 9999)])
    assert (named.ok, named.error_kind) == (False, "protocol")
    assert named.detail == f"no interface named up7 on {ROUTER}"
    assert named.value["oper"] is None
    assert numbered.detail == f"no interface with ifIndex 9999 on {ROUTER}"


def test_a_silent_router_is_a_timeout_with_no_oper(net: LinkNet) -> None:
    [result] = net.probe([interface("up0")], timeout=0.5)  # no snmpd started
    assert (result.ok, result.error_kind, result.value["oper"]) == (False, "timeout", None)
    assert isinstance(result, ProbeResult)


def test_an_interface_renumbered_by_the_router_is_found_again(net: LinkNet) -> None:
    need_namespaces(*SNMP_TOOLS)
    net.start_snmpd()
    net.lower_if_cache(1)
    make = ["ip", "link", "add", "tst0", "index", "{}", "type", "veth", "peer", "name", "tst1"]
    first_index, second_index = 76, 77
    tst0 = Target(ROUTER, InterfaceProbe(V2C, "tst0", None), id=PRIMARY[0])
    first, again = net.probe(
        [
            ("run", [part.format(first_index) for part in make]),
            ("until", tst0, "ifindex", first_index, 15.0),
            ("run", ["ip", "link", "del", "tst0"]),
            ("run", [part.format(second_index) for part in make]),
            ("until", tst0, "ifindex", second_index, 15.0),
        ]
    )
    assert (first.value["ifindex"], first.value["ifname"]) == (first_index, "tst0")
    # The index remembered for tst0 is gone: the probe looked the name up again.
    assert (again.value["ifindex"], again.value["ifname"]) == (second_index, "tst0")
    assert again.error_kind != "protocol", again.detail


def test_sitewatch_probe_offers_path_interface_and_bound_pings(net: LinkNet) -> None:
    need_namespaces(*SNMP_TOOLS)
    net.start_snmpd()

    def probe_from_site(*args: str) -> dict[str, object]:
        """Run `sitewatch probe ... --json` inside the site, where an agent would run."""
        cli = [sys.executable, "-m", "sitewatch.cli", "probe", *args, "--json"]
        done = run(["ip", "netns", "exec", net.site, *cli])
        found: dict[str, object] = json.loads(done.stdout)
        return found

    hops = [f"--hop={link}={hop}" for link, (hop,) in HOPS]
    found = probe_from_site("path", CORE, "--link", PRIMARY[0], *hops)
    assert (found["ok"], found["target"], found["value"]) == (
        True,
        PRIMARY[0],
        {"toward": CORE, "ttl": 1, "hop": PRIMARY[4], "via": PRIMARY[0]},
    )
    read = probe_from_site("interface", ROUTER, "--ifname", "up1", "--link", BACKUP[0])
    assert (read["ok"], read["kind"], read["target"]) == (True, "interface", BACKUP[0])
    net.cut_primary()
    bound = probe_from_site("icmp", PRIMARY[4], "--source", PRIMARY[3], "--count", "1")
    assert (bound["ok"], bound["loss"]) == (False, 1.0)


def test_the_links_of_a_site_share_one_measurement_under_a_rationing_router(net: LinkNet) -> None:
    """A router rations its "time exceeded" (Linux: one a second per sender after a burst).

    Both links' path probes run at the same tick, as the agent runs them; they must share
    one echo, or they starve each other of answers and one of them reads "no hop answered".
    """
    net.sysctl(net.hub, "net.ipv4.icmp_ratelimit=1000")  # the kernel's default rationing
    try:
        rounds = 8  # past the burst of six the limiter allows
        before = time_exceeded_sent(net)
        together = ("together", [path_target(PRIMARY[0]), path_target(BACKUP[0])])
        results = net.probe([together] * rounds, gap=1.0)
        sent = time_exceeded_sent(net) - before
    finally:
        net.sysctl(net.hub, "net.ipv4.icmp_ratelimit=0")
    assert len(results) == 2 * rounds
    assert [r.value["via"] for r in results] == [PRIMARY[0]] * (2 * rounds), [
        r.detail for r in results
    ]
    assert sent == rounds  # one echo answered per tick, shared by both links
