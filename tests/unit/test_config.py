"""Each validation rule of the configuration, shown failing with the exact line it reports."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sitewatch.config import (
    ConfigError,
    Kind,
    check_files,
    load_agent_config,
    load_collector_config,
    load_inventory,
)
from sitewatch.config.model import CustomOid, HttpProbe, IcmpProbe, SipProbe, SnmpProbe, TcpProbe
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
    ],
)  # fmt: skip
def test_agent_rules(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = write(tmp_path, edit(AGENT, old, new), "agent.yaml")
    assert problems_of(path) == [f"{path}:{expected}"]


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
