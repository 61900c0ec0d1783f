"""Each validation rule of the configuration, shown failing with the exact line it reports."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest
import yaml

from sitewatch.config import (
    ConfigError,
    Kind,
    check_files,
    load_agent_config,
    load_collector_config,
    load_inventory,
    yamltree,
)
from sitewatch.config.model import (
    CustomOid,
    HttpProbe,
    IcmpProbe,
    LinkInterface,
    PathSpec,
    SipProbe,
    SnmpProbe,
    TcpProbe,
)
from sitewatch.config.reader import parse_duration

CONFIG = Path(__file__).resolve().parents[2] / "config"

INVENTORY = """\
organisation: Test Municipality
timezone: Africa/Johannesburg
business_hours: {days: [mon, tue, wed, thu, fri], start: "08:00", end: "16:30", holidays: ZA}
thresholds:
  interval: 30s
  timeout: 2s
  fail_after: 3
sites:
  - id: main
    name: Main
    users: 40
    links:
      - {id: main-mpls, kind: mpls, role: primary, to: hub, probe: [10.99.1.1], edge: 10.99.1.2}
    devices:
      - {id: main-prn-01, kind: printer, address: 10.100.0.21, probes: [icmp, snmp]}
  - id: branch
    name: Branch
    users: 5
    links:
      - {id: branch-wireless, kind: wireless, to: main, probe: [10.98.1.1]}
"""


def write(tmp_path: Path, text: str, name: str = "inventory.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[str]:
    """Return the problem lines check-config would print for one file."""
    [outcome] = check_files([path])
    return [str(problem) for problem in outcome.problems]


def edit(text: str, old: str, new: str) -> str:
    assert old in text, f"test setup: {old!r} not in the base document"
    return text.replace(old, new, 1)


def test_the_base_inventory_is_valid(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, INVENTORY))
    assert [site.id for site in inventory.sites] == ["main", "branch"]
    assert inventory.site("branch").upstream == ("main",)
    assert inventory.thresholds.fail_after == 3


def test_example_files_are_valid_together() -> None:
    outcomes = check_files(sorted(CONFIG.glob("*.yaml")))
    assert {o.kind for o in outcomes} == {Kind.INVENTORY, Kind.AGENT, Kind.COLLECTOR}
    assert [str(p) for o in outcomes for p in o.problems] == []


def test_example_inventory_has_the_nine_mbhashe_sites_and_their_chains() -> None:
    inventory = load_inventory(CONFIG / "inventory.yaml")
    users = {site.id: site.users for site in inventory.sites}
    assert users["dutywa-main"] + users["dutywa-park-homes"] == 90
    assert sum(users.values()) == 90 + 7 + 12 + 10 + 11 + 7 + 5 + 15 + 0
    assert inventory.site("town-hall").upstream == ("customer-care",)
    assert inventory.site("dutywa-trc").upstream == ("dutywa-main",)
    assert not inventory.site("dutywa-pound").monitored
    for site_id in ("dutywa-workshop", "willowvale", "elliotdale"):
        roles = sorted(link.role for link in inventory.site(site_id).links)
        assert roles == ["backup", "primary"], site_id
    for site in inventory.sites:
        if site.monitored:
            kinds = {device.kind for device in site.devices}
            assert {"printer", "phone"} <= kinds, site.id


def test_thresholds_are_inherited_and_overridden() -> None:
    inventory = load_inventory(CONFIG / "inventory.yaml")
    backup = next(link for _, link in inventory.links() if link.id == "elliotdale-wireless")
    primary = next(link for _, link in inventory.links() if link.id == "elliotdale-mpls")
    assert backup.thresholds.rtt_degraded_ms == 600
    assert primary.thresholds.rtt_degraded_ms == 300
    assert backup.thresholds.fail_after == inventory.thresholds.fail_after


# -- one failing example per rule, with the exact line reported ----------------------------

RULES = [
    pytest.param(
        "users: 40",
        "users: lots",
        "11: sites[0].users: expected a whole number, got the text 'lots'",
        id="wrong-type",
    ),
    pytest.param(
        "to: main,",
        "to: mian,",
        "20: sites[1].links[0].to: 'mian' is neither hub nor a site id (did you mean 'main'?)",
        id="link-to-unknown-site",
    ),
    pytest.param(
        "id: main-prn-01",
        "id: main-mpls",
        "15: sites[0].devices[0].id: id 'main-mpls' is already used by the link on line 13",
        id="duplicate-id",
    ),
    pytest.param(
        "    users: 5",
        "    usres: 5",
        "18: sites[1].usres: unknown key (did you mean 'users'?)",
        id="misspelt-key",
    ),
    pytest.param(
        "    users: 5\n",
        "",
        "16: sites[1]: missing required key 'users'",
        id="missing-key",
    ),
    pytest.param(
        "interval: 30s",
        "interval: 30 seconds",
        "5: thresholds.interval: expected a duration such as 30s, 15m, 4h or 2d, "
        "got the text '30 seconds'",
        id="bad-duration",
    ),
    pytest.param(
        "timeout: 2s",
        "timeout: 45s",
        "6: thresholds.timeout: timeout (45s) must be shorter than interval (30s)",
        id="timeout-not-below-interval",
    ),
    pytest.param(
        "fail_after: 3",
        "fail_after: 0",
        "7: thresholds.fail_after: must be at least 1, not 0",
        id="fail-after-below-one",
    ),
    pytest.param(
        "fail_after: 3",
        "fail_after: 3\n  loss_degraded: 20",
        "8: thresholds.loss_degraded: must be a fraction between 0 and 1 (0.2 means 20%), not 20.0",
        id="fraction-out-of-range",
    ),
    pytest.param(
        "address: 10.100.0.21",
        "address: 999.1.1.1",
        "15: sites[0].devices[0].address: '999.1.1.1' is neither a valid IP address nor a "
        "host name",
        id="bad-device-address",
    ),
    pytest.param(
        "probe: [10.99.1.1]",
        "probe: [10.99.1]",
        "13: sites[0].links[0].probe[0]: '10.99.1' is not a valid IP address",
        id="bad-link-address",
    ),
    pytest.param(
        "kind: wireless",
        "kind: radio",
        "20: sites[1].links[0].kind: 'radio' is not one of mpls, wireless, fibre, lte, adsl",
        id="unknown-link-kind",
    ),
    pytest.param(
        "timezone: Africa/Johannesburg",
        "timezone: Africa/Dutywa",
        "2: timezone: unknown time zone 'Africa/Dutywa' (use a name like Africa/Johannesburg)",
        id="unknown-time-zone",
    ),
    pytest.param(
        'start: "08:00"',
        "start: 8:00",
        '3: business_hours.start: expected a time like "08:00", got a number (480) '
        '(write it in quotes, like "08:00")',
        id="unquoted-time-read-as-sexagesimal",
    ),
    pytest.param(
        'end: "16:30"',
        'end: "07:00"',
        "3: business_hours: start 08:00 must be before end 07:00",
        id="hours-backwards",
    ),
    pytest.param(
        "holidays: ZA",
        "holidays: XX",
        "3: business_hours.holidays: no public-holiday calendar for country 'XX': use an ISO "
        "3166 code such as ZA, or none",
        id="unknown-holiday-country",
    ),
    pytest.param(
        "to: hub,",
        "to: main,",
        "13: sites[0].links[0].to: a link cannot lead to its own site",
        id="link-to-own-site",
    ),
    pytest.param(
        "role: primary,",
        "role: backup,",
        "9: sites[0]: has only backup links: mark its main link role: primary",
        id="only-backup-links",
    ),
    pytest.param(
        "probes: [icmp, snmp]",
        "probes: [icmp, tcp]",
        "15: sites[0].devices[0].probes[1]: a tcp probe needs a port: write "
        "{kind: tcp, port: 9100}",
        id="tcp-probe-without-port",
    ),
    pytest.param(
        "probes: [icmp, snmp]",
        "probes: [icmp, icmp]",
        "15: sites[0].devices[0].probes[1]: the same probe is already listed on line 15",
        id="repeated-probe",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), RULES)
def test_rule_reports_one_precise_line(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = write(tmp_path, edit(INVENTORY, old, new))
    assert problems_of(path) == [f"{path}:{expected}"]


def test_cycle_of_sites_is_reported(tmp_path: Path) -> None:
    text = edit(INVENTORY, "to: hub,", "to: branch,")
    problems = problems_of(write(tmp_path, text))
    assert len(problems) == 1
    assert problems[0].endswith(
        "9: sites[0]: sites form a loop, so none of them reaches the hub: main → branch → main"
    )


def test_monitored_site_needs_a_link(tmp_path: Path) -> None:
    text = INVENTORY + "  - {id: pound, name: Pound, users: 0}\n"
    assert problems_of(write(tmp_path, text)) == [
        f"{tmp_path / 'inventory.yaml'}:21: sites[2]: a monitored site needs at least one link "
        "(or set monitored: false)"
    ]
    text = INVENTORY + "  - {id: pound, name: Pound, users: 0, monitored: false}\n"
    assert problems_of(write(tmp_path, text)) == []


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    text = edit(INVENTORY, "    users: 5\n", "    users: 5\n    users: 6\n")
    path = write(tmp_path, text)
    assert problems_of(path) == [
        f"{path}:19: sites[1].users: duplicate key (first given on line 18)"
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = edit(edit(INVENTORY, "users: 40", "users: lots"), "to: main,", "to: nowhere,")
    text = edit(text, "    users: 5", "    usres: 5")
    problems = problems_of(write(tmp_path, text))
    assert len(problems) == 3  # users, misspelt usres (not also "missing users"), bad to
    assert [p.split(":")[1] for p in problems] == ["11", "18", "20"]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "organisation: x\nsites: [\n  {id: a\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:4: not valid YAML")


@pytest.mark.parametrize("loader", ["libyaml", "python"])
@pytest.mark.parametrize(
    "nested",
    [
        "sites: " + "[" * 2_000 + "]" * 2_000 + "\n",
        "sites:\n" + "".join(" " * n + "-\n" for n in range(2_000)),
    ],
    ids=["flow", "block"],
)
def test_yaml_nested_thousands_deep_is_refused_not_a_crash(
    tmp_path: Path, nested: str, loader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to end check-config, and the collector's start, with a RecursionError; libyaml
    refuses such nesting itself, the pure-Python parser (without libyaml) runs out of stack."""
    if loader == "python":
        monkeypatch.setattr(yamltree, "LOADER", yaml.SafeLoader)
    [problem] = problems_of(write(tmp_path, nested))
    assert "not valid YAML" in problem
    assert "nest" in problem


def test_unreadable_and_unrecognised_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    assert problems_of(missing) == [f"{missing}: cannot read: No such file or directory"]
    other = write(tmp_path, "hello: world\n", "other.yaml")
    [problem] = problems_of(other)
    assert problem.startswith(f"{other}:1: cannot tell what kind of file this is")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00junk")
    assert problems_of(binary) == [f"{binary}: not UTF-8 text (byte 0)"]


def test_snmp_v3_rules(tmp_path: Path) -> None:
    text = INVENTORY.replace(
        "sites:",
        "snmp: {version: 3, user: monitor, auth_protocol: sha256, auth_password: short,\n"
        "       community: public}\nsites:",
    )
    path = write(tmp_path, text)
    assert problems_of(path) == [
        f"{path}:9: snmp.community: applies only to SNMP versions 1 and 2c",
        f"{path}:8: snmp.auth_password: must be at least 8 characters",
    ]
    v2c_context = write(tmp_path, INVENTORY.replace("sites:", "snmp: {context: lab}\nsites:"))
    assert problems_of(v2c_context) == [
        f"{v2c_context}:8: snmp.context: applies only to SNMP version 3"
    ]
    good = INVENTORY.replace(
        "sites:",
        "snmp: {version: 3, user: monitor, auth_protocol: sha256, auth_password: longenough,\n"
        "       priv_protocol: aes, priv_password: alsolongenough, context: vlan20}\nsites:",
    )
    inventory = load_inventory(write(tmp_path, good))
    credentials = inventory.snmp
    assert (credentials.version, credentials.user, credentials.priv_protocol) == (
        "3",
        "monitor",
        "aes",
    )
    assert credentials.context == "vlan20"


def test_device_snmp_override_is_merged_field_by_field(tmp_path: Path) -> None:
    text = edit(
        INVENTORY,
        "probes: [icmp, snmp]}",
        "probes: [icmp, snmp], snmp: {community: private}}",
    )
    inventory = load_inventory(write(tmp_path, text))
    probe = inventory.site("main").devices[0].probes[1]
    assert probe.kind == "snmp"
    assert probe.credentials.community == "private"
    assert probe.credentials.version == "2c"


def test_probe_long_forms(tmp_path: Path) -> None:
    text = edit(
        INVENTORY,
        "probes: [icmp, snmp]",
        "probes: [{kind: icmp, count: 5, interval: 500ms}, {kind: tcp, port: 9100},"
        " {kind: http, url: 'https://10.100.0.21/', expect_status: 200, ca_file: ca.pem},"
        " {kind: snmp, profile: custom, oids: [{name: signal,"
        " oid: 1.3.6.1.4.1.41112.1.4.5.1.5.1, min: -75}]}, {kind: sip, transport: tcp}]",
    )
    inventory = load_inventory(write(tmp_path, text))
    icmp, tcp, http, snmp, sip = inventory.site("main").devices[0].probes
    assert icmp == IcmpProbe(count=5, interval=0.5)
    assert tcp == TcpProbe(port=9100)
    assert http == HttpProbe("https://10.100.0.21/", expect_status=200, ca_file=tmp_path / "ca.pem")
    assert isinstance(snmp, SnmpProbe)
    assert snmp.oids == (CustomOid("signal", "1.3.6.1.4.1.41112.1.4.5.1.5.1", -75, None),)
    assert sip == SipProbe(port=5060, transport="tcp")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", 30.0), ("15m", 900.0), ("4h", 14400.0), ("2d", 172800.0), ("1h30m", 5400.0),
        ("250ms", 0.25), ("", None), ("30", None), ("s", None), ("-5s", None), ("5 s", None),
        ("1x", None),
    ],
)  # fmt: skip
def test_parse_duration(text: str, expected: float | None) -> None:
    parsed = parse_duration(text)
    assert (parsed.total_seconds() if parsed else None) == expected


# -- agent and collector files --------------------------------------------------------------

AGENT = """\
id: willowvale-01
site: willowvale
collector: http://10.99.0.1:8080
token_file: agent.token
state_dir: state
"""


def test_agent_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    config = load_agent_config(write(tmp_path, AGENT, "agent.yaml"))
    assert config.token_file == tmp_path / "agent.token"
    assert config.state_dir == tmp_path / "state"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("http://10.99.0.1:8080", "ftp://10.99.0.1", "3: collector: 'ftp://10.99.0.1' is not an "
         "http:// or https:// URL with a host"),
        ("http://10.99.0.1:8080", "http://10.99.0.1:99999", "3: collector: "
         "'http://10.99.0.1:99999' has an invalid port"),
        ("state_dir: state", "state_dir: state\nca_file: ca.pem", "6: ca_file: ca_file applies "
         "only to an https:// collector"),
        ("token_file: agent.token\n", "", "1: missing required key 'token_file'"),
        ("http://10.99.0.1:8080", "[]", "3: collector: must name at least one collector"),
        ("http://10.99.0.1:8080", "[http://10.99.0.1:8080, http://10.99.0.1:8080/]",
         "3: collector[1]: 'http://10.99.0.1:8080' is listed twice"),
        ("http://10.99.0.1:8080", "[http://10.99.0.1:8080, gopher://x]", "3: collector[1]: "
         "'gopher://x' is not an http:// or https:// URL with a host"),
        ("http://10.99.0.1:8080", "[https://a.example, http://b.example]", "3: collector[1]: "
         "'http://b.example' mixes http:// and https:// in one list: use one for all"),
    ],
)  # fmt: skip
def test_agent_rules(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = write(tmp_path, edit(AGENT, old, new), "agent.yaml")
    assert problems_of(path) == [f"{path}:{expected}"]


def test_an_agent_may_name_several_collectors_in_the_order_to_try_them(tmp_path: Path) -> None:
    text = edit(AGENT, "collector: http://10.99.0.1:8080", "collector:\n  - https://a.example/\n"
                "  - https://b.example:8443\nca_file: ca.pem")  # fmt: skip
    config = load_agent_config(write(tmp_path, text, "agent.yaml"))
    assert config.collectors == ("https://a.example", "https://b.example:8443")
    assert config.ca_file == tmp_path / "ca.pem"
    one = load_agent_config(write(tmp_path, AGENT, "agent.yaml"))
    assert one.collectors == ("http://10.99.0.1:8080",)


def test_agent_site_is_checked_against_an_inventory_given_with_it(tmp_path: Path) -> None:
    agent = write(tmp_path, AGENT, "agent.yaml")
    inventory = write(tmp_path, INVENTORY)
    outcomes = check_files([agent, inventory])
    assert [str(p) for p in outcomes[0].problems] == [
        f"{agent}:2: site: no site 'willowvale' in {inventory}"
    ]
    assert outcomes[1].problems == ()


def collector_text(inventory: str = "inventory.yaml") -> str:
    return f"""\
listen: 0.0.0.0:8080
database: collector.db
inventory: {inventory}
agents:
  - {{id: main-01, site: main, token_sha256: {"a" * 64}}}
api_tokens:
  - {{name: screen, role: viewer, token_sha256: {"b" * 64}}}
"""


def test_collector_file_loads_its_inventory(tmp_path: Path) -> None:
    write(tmp_path, INVENTORY)
    config = load_collector_config(write(tmp_path, collector_text(), "collector.yaml"))
    assert config.inventory.organisation == "Test Municipality"
    assert config.database == str(tmp_path / "collector.db")
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 8080)  # noqa: S104


def test_collector_problems_include_its_inventory_s(tmp_path: Path) -> None:
    inventory = write(tmp_path, edit(INVENTORY, "users: 40", "users: lots"))
    text = edit(collector_text(), "site: main", "site: elsewhere")
    text = edit(text, "b" * 64, "a" * 64)
    collector = write(tmp_path, text, "collector.yaml")
    with pytest.raises(ConfigError) as caught:
        load_collector_config(collector)
    assert [str(p) for p in caught.value.problems] == [
        f"{collector}:7: api_tokens[0].token_sha256: the same token is already given on line 5",
        f"{inventory}:11: sites[0].users: expected a whole number, got the text 'lots'",
    ]
    fixed = write(tmp_path, INVENTORY)
    with pytest.raises(ConfigError) as caught:
        load_collector_config(collector)
    assert f"{collector}:5: agents[0].site: no site 'elsewhere' in the inventory" in str(
        caught.value
    )
    assert fixed.exists()


def test_collector_rejects_bad_hashes_and_listen(tmp_path: Path) -> None:
    write(tmp_path, INVENTORY)
    text = edit(collector_text(), "0.0.0.0:8080", "8080")
    text = edit(text, "a" * 64, "abc")
    text += "users:\n  - {name: desk, role: operator, password_hash: plaintext}\n"
    path = write(tmp_path, text, "collector.yaml")
    assert problems_of(path) == [
        f"{path}:1: listen: '8080' is not HOST:PORT, like 0.0.0.0:8080 or [::]:8080",
        f"{path}:5: agents[0].token_sha256: expected 64 hex digits: the SHA-256 of the token, "
        "as printed by `printf %s TOKEN | sha256sum`",
        f"{path}:9: users[0].password_hash: not a hash made by `sitewatch hash-password`",
    ]


# -- a link's path-bound evidence: interface, next_hop and path, source and via ---------------

TWO_LINKS = """\
organisation: Test Municipality
sites:
  - id: wv
    name: Willowvale
    users: 5
    path: {toward: 10.99.0.254, ttl: 2}
    links:
      - id: wv-mpls
        kind: mpls
        role: primary
        to: hub
        probe: [10.99.6.1]
        next_hop: [10.99.6.1]
        interface: {device: wv-rtr, ifname: up0}
        source: 10.99.6.2
      - id: wv-fibre
        kind: fibre
        role: backup
        to: hub
        probe: [10.99.7.1]
        next_hop: [10.99.7.1, 10.99.7.5]
        interface: {device: wv-rtr, ifindex: 3}
        via: up1
    devices:
      - {id: wv-rtr, kind: router, address: 10.106.0.1, probes: [icmp, {kind: snmp, profile: interface}]}
"""  # noqa: E501 -- one device per line, as the example inventory writes them


def test_link_evidence_keys_are_read_into_the_link(tmp_path: Path) -> None:
    site = load_inventory(write(tmp_path, TWO_LINKS)).site("wv")
    assert site.path == PathSpec(toward=ipaddress.IPv4Address("10.99.0.254"), ttl=2)
    mpls, fibre = site.links
    assert mpls.interface is not None
    assert fibre.interface is not None
    read_as = mpls.interface.credentials  # the router's snmp probe's: the inventory default
    assert read_as is not None
    assert read_as.community == "public"
    assert mpls.interface == LinkInterface(
        "wv-rtr", ifname="up0", ifindex=None, credentials=read_as
    )
    assert fibre.interface == LinkInterface("wv-rtr", ifname=None, ifindex=3, credentials=read_as)


def test_a_router_without_an_snmp_probe_is_read_with_its_own_settings(tmp_path: Path) -> None:
    own = TWO_LINKS.replace(
        "probes: [icmp, {kind: snmp, profile: interface}]}",
        "probes: [icmp], snmp: {community: r0uter}}",
    )
    mpls, fibre = load_inventory(write(tmp_path, own)).site("wv").links
    for link in (mpls, fibre):
        assert link.interface is not None
        assert link.interface.credentials is not None
        assert link.interface.credentials.community == "r0uter"
    assert mpls.next_hop == (ipaddress.IPv4Address("10.99.6.1"),)
    assert fibre.next_hop == tuple(map(ipaddress.IPv4Address, ["10.99.7.1", "10.99.7.5"]))
    assert (mpls.source, mpls.via) == (ipaddress.IPv4Address("10.99.6.2"), None)
    assert (fibre.source, fibre.via) == (None, "up1")
    assert mpls.bound_ping
    assert fibre.bound_ping


def test_a_path_ttl_defaults_to_one(tmp_path: Path) -> None:
    text = edit(TWO_LINKS, "toward: 10.99.0.254, ttl: 2}", "toward: 10.99.0.254}")
    path = load_inventory(write(tmp_path, text)).site("wv").path
    assert path is not None
    assert path.ttl == 1


EVIDENCE_RULES = [
    pytest.param(
        "{device: wv-rtr, ifname: up0}",
        "{device: wv-rt, ifname: up0}",
        ["14: sites[0].links[0].interface.device: no device 'wv-rt' at this site "
         "(did you mean 'wv-rtr'?)"],
        id="interface-device-not-at-the-site",
    ),
    pytest.param(
        "ifindex: 3}",
        "ifindex: 3, ifname: up1}",
        ["22: sites[0].links[1].interface: give exactly one of ifname (like up0) and ifindex "
         "(like 2)"],
        id="interface-ifname-and-ifindex",
    ),
    pytest.param(
        "{device: wv-rtr, ifindex: 3}",
        "{device: wv-rtr}",
        ["22: sites[0].links[1].interface: give exactly one of ifname (like up0) and ifindex "
         "(like 2)"],
        id="interface-neither-ifname-nor-ifindex",
    ),
    pytest.param(
        "ifindex: 3}",
        "ifindex: 0}",
        ["22: sites[0].links[1].interface.ifindex: must be at least 1, not 0"],
        id="interface-ifindex-zero",
    ),
    pytest.param(
        "{device: wv-rtr, ifindex: 3}",
        "{ifindex: 3}",
        ["22: sites[0].links[1].interface: missing required key 'device'"],
        id="interface-without-device",
    ),
    pytest.param(
        "{device: wv-rtr, ifindex: 3}",
        "{device: wv-rtr, ifindex: 3, oid: 1.3.6}",
        ["22: sites[0].links[1].interface.oid: unknown key"],
        id="interface-unknown-key",
    ),
    pytest.param(
        "        via: up1",
        "        vai: up1",
        ["23: sites[0].links[1].vai: unknown key (did you mean 'via'?)"],
        id="link-unknown-key",
    ),
    pytest.param(
        "    path: {toward: 10.99.0.254, ttl: 2}\n",
        "    critical: false\n",
        ["13: sites[0].links[0].next_hop: needs the site's path: {toward: ADDRESS, ttl: 1}, "
         "the probe whose answering hop it names",
         "21: sites[0].links[1].next_hop: needs the site's path: {toward: ADDRESS, ttl: 1}, "
         "the probe whose answering hop it names"],
        id="next-hop-without-path",
    ),
    pytest.param(
        "        next_hop: [10.99.7.1, 10.99.7.5]\n",
        "        edge: 10.99.7.2\n",
        [],
        id="one-link-with-next-hop-is-enough-for-a-path",
    ),
    pytest.param(
        "next_hop: [10.99.7.1, 10.99.7.5]",
        "next_hop: []",
        ["21: sites[0].links[1].next_hop: needs at least one address: the hop that answers "
         "the path probe while traffic uses this link"],
        id="next-hop-empty",
    ),
    pytest.param(
        "next_hop: [10.99.7.1, 10.99.7.5]",
        "next_hop: [10.99.7.1, 10.99.6.1]",
        ["21: sites[0].links[1].next_hop[1]: 10.99.6.1 is already a next hop of wv-mpls "
         "(line 13)"],
        id="next-hop-of-two-links",
    ),
    pytest.param(
        "next_hop: [10.99.7.1, 10.99.7.5]",
        "next_hop: [10.99.7.1, hub]",
        ["21: sites[0].links[1].next_hop[1]: 'hub' is not a valid IP address"],
        id="next-hop-not-an-address",
    ),
    pytest.param(
        "{toward: 10.99.0.254, ttl: 2}",
        "{toward: 10.99.0.254, ttl: 31}",
        ["6: sites[0].path.ttl: must be at most 30, not 31"],
        id="path-ttl-too-far",
    ),
    pytest.param(
        "{toward: 10.99.0.254, ttl: 2}",
        "{toward: core, ttl: 2}",
        ["6: sites[0].path.toward: 'core' is not a valid IP address"],
        id="path-toward-not-an-address",
    ),
    pytest.param(
        "{toward: 10.99.0.254, ttl: 2}",
        "{ttl: 2}",
        ["6: sites[0].path: missing required key 'toward'"],
        id="path-without-toward",
    ),
    pytest.param(
        "source: 10.99.6.2",
        "source: up0",
        ["15: sites[0].links[0].source: 'up0' is not a valid IP address"],
        id="source-not-an-address",
    ),
    pytest.param(
        "        probe: [10.99.6.1]\n",
        "        edge: 10.99.6.2\n",
        ["15: sites[0].links[0].source: sets where the far end's ping leaves from: give "
         "probe too"],
        id="source-without-probe",
    ),
    pytest.param(
        "via: up1",
        "via: eth0/1",
        ["23: sites[0].links[1].via: 'eth0/1' is not an interface name: 1 to 15 bytes, "
         "no '/', ':', spaces or control characters, not . or .."],
        id="via-with-a-slash",
    ),
    pytest.param(
        "via: up1",
        "via: a-very-long-ifname",
        ["23: sites[0].links[1].via: 'a-very-long-ifname' is not an interface name: 1 to 15 "
         "bytes, no '/', ':', spaces or control characters, not . or .."],
        id="via-too-long",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "expected"), EVIDENCE_RULES)
def test_link_evidence_rule_names_the_key(
    tmp_path: Path, old: str, new: str, expected: list[str]
) -> None:
    path = write(tmp_path, edit(TWO_LINKS, old, new))
    assert problems_of(path) == [f"{path}:{line}" for line in expected]


def test_a_path_needs_a_link_with_next_hop(tmp_path: Path) -> None:
    text = edit(TWO_LINKS, "        next_hop: [10.99.6.1]\n", "        edge: 10.99.6.2\n")
    text = edit(text, "        next_hop: [10.99.7.1, 10.99.7.5]\n", "        edge: 10.99.7.2\n")
    path = write(tmp_path, text)
    assert problems_of(path) == [
        f"{path}:6: sites[0].path: no link of this site gives next_hop, so the path probe "
        "could not tell which link answered: give each link's next_hop"
    ]


def test_the_router_may_be_read_with_the_inventory_s_credentials(tmp_path: Path) -> None:
    """No snmp probe on the router and no settings of its own: the inventory's apply."""
    text = edit(TWO_LINKS, "probes: [icmp, {kind: snmp, profile: interface}]}", "probes: [icmp]}")
    assert problems_of(write(tmp_path, text)) == []


def test_links_of_a_site_with_a_backup_and_no_bound_evidence_are_warned_of(
    tmp_path: Path,
) -> None:
    text = edit(TWO_LINKS, "        source: 10.99.6.2\n", "")
    text = edit(text, "        next_hop: [10.99.6.1]\n", "")
    text = edit(text, "        interface: {device: wv-rtr, ifname: up0}\n", "")
    path = write(tmp_path, text)
    [outcome] = check_files([path])
    assert outcome.problems == ()
    assert [str(w) for w in outcome.warnings] == [
        f"{path}:8: sites[0].links[0]: warning: link 'wv-mpls' has no path-bound evidence "
        "(edge, interface, next_hop, source or via): a failover to/from it cannot be seen"
    ]


def test_each_kind_of_bound_evidence_silences_the_warning(tmp_path: Path) -> None:
    bare = "      - {id: wv-fibre, kind: fibre, role: backup, to: hub, probe: [10.99.7.1]}\n"
    base = (
        "organisation: Test Municipality\nsites:\n  - id: wv\n    name: Willowvale\n"
        "    users: 5\n    links:\n"
        "      - {id: wv-mpls, kind: mpls, role: primary, to: hub, probe: [10.99.6.1]}\n"
    )
    devices = "    devices:\n      - {id: wv-rtr, kind: router, address: 10.106.0.1}\n"
    bound = {
        "edge": "edge: 10.99.7.2",
        "interface": "interface: {device: wv-rtr, ifname: up1}",
        "source": "source: 10.99.7.2",
        "via": "via: up1",
    }
    for key, text in bound.items():
        path = write(tmp_path, base + bare.replace("}\n", f", {text}}}\n") + devices)
        [outcome] = check_files([path])
        assert outcome.problems == (), key
        assert [w.path for w in outcome.warnings] == ["sites[0].links[0]"], key
    with_path = base.replace("    links:", "    path: {toward: 10.99.0.254}\n    links:")
    path = write(tmp_path, with_path + bare.replace("}\n", ", next_hop: [10.99.7.1]}\n"))
    [outcome] = check_files([path])
    # the path probe binds the backup, but sees it only while it carries the traffic
    first, idle = outcome.warnings
    assert [first.path, idle.path] == ["sites[0].links[0]", "sites[0].links[1]"]
    assert "only while it carries the traffic" in idle.message


def test_example_inventory_gives_its_backed_up_sites_bound_evidence() -> None:
    [outcome] = check_files([CONFIG / "inventory.yaml"])
    assert (outcome.problems, outcome.warnings) == ((), ())
    inventory = load_inventory(CONFIG / "inventory.yaml")
    for site_id, router in [
        ("dutywa-workshop", "ws-rtr-01"),
        ("willowvale", "wv-rtr-01"),
        ("elliotdale", "ed-rtr-01"),
    ]:
        site = inventory.site(site_id)
        assert site.path == PathSpec(ipaddress.IPv4Address("10.99.0.254"), 1)
        assert [(link.interface, link.next_hop) for link in site.links] == [
            (LinkInterface(router, f"up{i}", None, inventory.snmp), link.probe)
            for i, link in enumerate(site.links)
        ]
    for site in inventory.sites:
        if len(site.links) < 2:
            assert site.path is None
            assert all(link.interface is None and not link.next_hop for link in site.links)


def test_a_collector_file_s_inventory_is_warned_of_once(tmp_path: Path) -> None:
    text = INVENTORY + (
        "      - {id: branch-lte, kind: lte, role: backup, to: hub, probe: [10.97.1.1]}\n"
    )
    inventory = write(tmp_path, text)
    collector = write(tmp_path, collector_text(), "collector.yaml")
    expected = [
        f"{inventory}:{line}: sites[1].links[{i}]: warning: link {link!r} has no path-bound "
        "evidence (edge, interface, next_hop, source or via): a failover to/from it cannot be "
        "seen"
        for i, (line, link) in enumerate([(20, "branch-wireless"), (21, "branch-lte")])
    ]
    [alone] = check_files([collector])
    assert (alone.problems, [str(w) for w in alone.warnings]) == ((), expected)
    both = check_files([collector, inventory])
    assert [[str(w) for w in o.warnings] for o in both] == [[], expected]
