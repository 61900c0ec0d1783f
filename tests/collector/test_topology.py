"""Root cause on the example municipality: cuts, chains, backups, silent agents, devices."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.topology import Cause, Evidence, Topology, correlate
from sitewatch.config.files import load_inventory

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = load_inventory(ROOT / "config" / "inventory.yaml")
TOPOLOGY = Topology(INVENTORY).with_agents(
    (f"{site.id}-01", site.id) for site in INVENTORY.sites if site.monitored
)
LINKS = [link.id for _, link in INVENTORY.links()]
MONITORED = [site.id for site in INVENTORY.sites if site.monitored]


def evidence(
    down: Mapping[str, str] | None = None,
    *,
    silent: frozenset[str] = frozenset(),
    devices_down: Mapping[str, frozenset[str]] | None = None,
) -> Evidence:
    """Every link up and every agent heard, except as stated."""
    links = dict.fromkeys(LINKS, "up") | dict(down or {})
    alive = {site: site not in silent for site in MONITORED}
    return Evidence(links, alive, devices_down or {})  # type: ignore[arg-type]


def keys(causes: tuple[Cause, ...]) -> list[str]:
    return [cause.key for cause in causes]


def test_all_well_means_no_cause_and_every_site_up() -> None:
    result = correlate(TOPOLOGY, evidence(), frozenset())
    assert result.causes == ()
    assert {result.sites[s] for s in MONITORED} == {"up"}
    assert result.sites["dutywa-pound"] == "unmonitored"


def test_a_cut_chain_is_one_p1_on_the_upstream_link() -> None:
    # Customer Care's MPLS fails: its agent and Town Hall's fall silent, and the centre sees
    # both edges stop answering (Town Hall's wireless edge sits behind the cut).
    cut = evidence(
        {"customer-care-mpls": "down", "town-hall-wireless": "down"},
        silent=frozenset({"customer-care", "town-hall"}),
    )
    result = correlate(TOPOLOGY, cut, frozenset())
    assert keys(result.causes) == ["link:customer-care-mpls"]
    (cause,) = result.causes
    assert cause.priority == "P1"
    assert cause.sites == ("customer-care", "town-hall")
    assert cause.affected_users == 22
    assert cause.detail["links"] == ["customer-care-mpls"]
    assert result.sites["customer-care"] == result.sites["town-hall"] == "down"
    assert result.sites["tesko"] == "up"
    cc_devices = {d.id for s in ("customer-care", "town-hall") for d in INVENTORY.site(s).devices}
    assert cc_devices <= result.unreachable
    assert "agent:town-hall-01" in cause.covers
    assert "link:town-hall-wireless" in cause.covers


def test_only_the_childs_own_link_cut_blames_the_child_link() -> None:
    cut = evidence({"town-hall-wireless": "down"}, silent=frozenset({"town-hall"}))
    result = correlate(TOPOLOGY, cut, frozenset())
    assert keys(result.causes) == ["link:town-hall-wireless"]
    assert result.causes[0].priority == "P1"  # 12 users >= large_site_users (10)
    assert result.sites["customer-care"] == "up"


def test_a_small_site_cut_off_is_p2_and_a_critical_one_p1() -> None:
    tesko = correlate(
        TOPOLOGY, evidence({"tesko-mpls": "down"}, silent=frozenset({"tesko"})), frozenset()
    )
    assert [(c.key, c.priority, c.affected_users) for c in tesko.causes] == [
        ("link:tesko-mpls", "P2", 7)
    ]
    main = correlate(
        TOPOLOGY,
        evidence(
            {"dutywa-main-mpls": "down", "trc-wireless": "down", "park-homes-wireless": "down"},
            silent=frozenset({"dutywa-main", "dutywa-trc", "dutywa-park-homes"}),
        ),
        frozenset(),
    )
    assert [(c.key, c.priority, c.affected_users) for c in main.causes] == [
        ("link:dutywa-main-mpls", "P1", 78 + 12 + 11)
    ]
    assert main.causes[0].sites == ("dutywa-main", "dutywa-park-homes", "dutywa-trc")


def test_a_primary_down_with_a_working_backup_is_one_p2_and_degraded() -> None:
    result = correlate(TOPOLOGY, evidence({"workshop-mpls": "down"}), frozenset())
    assert [(c.key, c.priority) for c in result.causes] == [("link:workshop-mpls", "P2")]
    assert result.sites["dutywa-workshop"] == "degraded"


def test_both_links_of_a_site_down_is_one_outage_named_by_its_primary() -> None:
    result = correlate(
        TOPOLOGY,
        evidence(
            {"workshop-mpls": "down", "workshop-fibre": "down"},
            silent=frozenset({"dutywa-workshop"}),
        ),
        frozenset(),
    )
    assert keys(result.causes) == ["link:workshop-mpls"]
    assert result.causes[0].detail["links"] == ["workshop-mpls", "workshop-fibre"]
    assert "link:workshop-fibre" in result.causes[0].covers
    assert result.sites["dutywa-workshop"] == "down"


def test_a_backup_down_alone_is_a_p3_and_a_degraded_link_a_p2() -> None:
    result = correlate(
        TOPOLOGY,
        evidence({"willowvale-fibre": "down", "elliotdale-mpls": "degraded"}),
        frozenset(),
    )
    assert [(c.key, c.priority) for c in result.causes] == [
        ("link:elliotdale-mpls", "P2"),
        ("link:willowvale-fibre", "P3"),
    ]
    assert result.sites["willowvale"] == "up"
    assert result.sites["elliotdale"] == "degraded"


def test_link_causes_carry_what_each_source_said_of_their_links() -> None:
    said = {
        "workshop-mpls": ("centre-ping down: 10.99.4.2: cannot send",),
        "willowvale-fibre": ("interface down: up1 (ifIndex 3) is down, admin up",),
        "tesko-mpls": ("centre-ping down: 10.99.2.2: cannot send", "far-end-ping up (not counted)"),
    }
    down = dict.fromkeys(said, "down")
    base = evidence(down, silent=frozenset({"tesko"}))
    result = correlate(TOPOLOGY, Evidence(base.links, base.agents_alive, {}, said), frozenset())
    causes = {cause.key: cause for cause in result.causes}
    assert causes["link:workshop-mpls"].title.startswith("Dutywa Workshop on its backup")
    assert {key: cause.detail["evidence"] for key, cause in causes.items()} == {
        "link:tesko-mpls": list(said["tesko-mpls"]),  # cut off
        "link:workshop-mpls": list(said["workshop-mpls"]),  # on its backup
        "link:willowvale-fibre": list(said["willowvale-fibre"]),  # no redundancy
    }
    # both links of a cut site: each word names its link
    both = {"workshop-mpls": said["workshop-mpls"], "workshop-fibre": ("path down",)}
    base = evidence(dict.fromkeys(both, "down"), silent=frozenset({"dutywa-workshop"}))
    result = correlate(TOPOLOGY, Evidence(base.links, base.agents_alive, {}, both), frozenset())
    assert result.causes[0].detail["evidence"] == [
        "workshop-mpls: centre-ping down: 10.99.4.2: cannot send",
        "workshop-fibre: path down",
    ]


def test_a_silent_agent_whose_edge_answers_is_an_agent_p3_not_an_outage() -> None:
    result = correlate(TOPOLOGY, evidence(silent=frozenset({"tesko"})), frozenset())
    assert [(c.key, c.priority) for c in result.causes] == [("agent:tesko-01", "P3")]
    assert result.sites["tesko"] == "up"


def test_a_silent_agent_with_no_link_evidence_is_the_site_itself() -> None:
    result = correlate(
        TOPOLOGY, evidence({"tesko-mpls": "unknown"}, silent=frozenset({"tesko"})), frozenset()
    )
    assert [(c.key, c.priority) for c in result.causes] == [("site:tesko", "P2")]
    assert result.sites["tesko"] == "down"


def test_no_evidence_and_no_agent_ever_heard_is_unknown_not_down() -> None:
    links = dict.fromkeys(LINKS, "unknown")
    result = correlate(TOPOLOGY, Evidence(links, {}, {}), frozenset())  # type: ignore[arg-type]
    assert result.causes == ()
    assert {result.sites[s] for s in MONITORED} == {"unknown"}


def test_devices_one_each_is_p3_and_most_of_a_kind_is_one_p2() -> None:
    phones = frozenset({"dm-phone-01", "dm-phone-02", "dm-phone-03"})
    result = correlate(
        TOPOLOGY,
        evidence(devices_down={"dutywa-main": phones | {"dm-prn-02"}}),
        frozenset(),
    )
    assert [(c.key, c.priority) for c in result.causes] == [
        ("devices:dutywa-main:phone", "P2"),
        ("device:dm-prn-02", "P3"),
    ]
    assert result.causes[0].covers == {f"device:{p}" for p in phones}


def test_half_of_two_printers_is_still_a_single_printer() -> None:
    result = correlate(
        TOPOLOGY, evidence(devices_down={"customer-care": frozenset({"cc-prn-01"})}), frozenset()
    )
    assert [(c.key, c.priority) for c in result.causes] == [("device:cc-prn-01", "P3")]


def test_maintenance_on_the_cut_link_opens_nothing_and_reads_maintenance() -> None:
    cut = evidence(
        {"customer-care-mpls": "down", "town-hall-wireless": "down"},
        silent=frozenset({"customer-care", "town-hall"}),
    )
    result = correlate(TOPOLOGY, cut, frozenset({("link", "customer-care-mpls")}))
    assert result.causes == ()
    assert result.sites["customer-care"] == result.sites["town-hall"] == "maintenance"
    assert result.links["customer-care-mpls"] == "maintenance"


def test_maintenance_of_one_site_behind_a_cut_leaves_the_others_in_the_incident() -> None:
    cut = evidence(
        {"customer-care-mpls": "down", "town-hall-wireless": "down"},
        silent=frozenset({"customer-care", "town-hall"}),
    )
    result = correlate(TOPOLOGY, cut, frozenset({("site", "town-hall")}))
    assert [(c.key, c.sites, c.affected_users) for c in result.causes] == [
        ("link:customer-care-mpls", ("customer-care",), 10)
    ]
    assert result.sites["town-hall"] == "maintenance"


def test_a_backup_failing_while_its_primary_is_in_maintenance_is_an_outage() -> None:
    both = {"workshop-mpls": "down", "workshop-fibre": "down"}
    result = correlate(
        TOPOLOGY,
        evidence(both, silent=frozenset({"dutywa-workshop"})),
        frozenset({("link", "workshop-mpls")}),
    )
    assert result.sites["dutywa-workshop"] == "down"
    assert [c.key for c in result.causes] == ["link:workshop-fibre"]
    assert result.causes[0].detail["in_maintenance"] == ["workshop-mpls"]
    planned = correlate(
        TOPOLOGY,
        evidence(both, silent=frozenset({"dutywa-workshop"})),
        frozenset({("link", "workshop-mpls"), ("link", "workshop-fibre")}),
    )
    assert (planned.sites["dutywa-workshop"], planned.causes) == ("maintenance", ())


def test_a_device_in_maintenance_neither_counts_nor_raises() -> None:
    result = correlate(
        TOPOLOGY,
        evidence(devices_down={"customer-care": frozenset({"cc-prn-01"})}),
        frozenset({("device", "cc-prn-01")}),
    )
    assert result.causes == ()
    assert "cc-prn-01" in result.maintained_devices


@pytest.mark.parametrize("site", ["customer-care", "tesko"])
def test_a_site_in_maintenance_raises_nothing(site: str) -> None:
    links = {link.id: "down" for link in INVENTORY.site(site).links}
    result = correlate(TOPOLOGY, evidence(links, silent=frozenset({site})), {("site", site)})
    assert all(site not in cause.sites for cause in result.causes)


STATES = st.sampled_from(["up", "degraded", "down", "unknown"])


@settings(max_examples=300, deadline=None)
@given(
    links=st.fixed_dictionaries(dict.fromkeys(LINKS, STATES)),
    alive=st.fixed_dictionaries({site: st.sampled_from([True, False, None]) for site in MONITORED}),
    down=st.sets(st.sampled_from([d.id for _, d in INVENTORY.devices()])),
    maintained=st.sets(
        st.one_of(
            st.tuples(st.just("site"), st.sampled_from(MONITORED)),
            st.tuples(st.just("link"), st.sampled_from(LINKS)),
        ),
        max_size=2,
    ),
)
def test_properties_of_any_pass(
    links: dict[str, str],
    alive: dict[str, bool | None],
    down: set[str],
    maintained: set[tuple[str, str]],
) -> None:
    by_site: dict[str, set[str]] = {}
    for device in down:
        by_site.setdefault(TOPOLOGY.device_site[device], set()).add(device)
    heard = {site: value for site, value in alive.items() if value is not None}
    result = correlate(
        TOPOLOGY,
        Evidence(links, heard, {s: frozenset(d) for s, d in by_site.items()}),  # type: ignore[arg-type]
        frozenset(maintained),
    )
    found = keys(result.causes)
    assert len(found) == len(set(found)), "one cause per key"
    for cause in result.causes:
        # a device behind a cut never has its own incident
        if cause.kind in ("device", "devices"):
            assert not set(cause.detail.get("devices", [cause.detail.get("device")])) & (
                result.unreachable
            )
        # nothing in maintenance is named by a cause
        assert not {("site", s) for s in cause.sites} & maintained
        assert not {("link", link) for link in cause.detail.get("links", [])} & maintained
        # priorities follow the table
        if cause.kind in ("link", "site") and result.sites[cause.sites[0]] == "down":
            users = sum(INVENTORY.site(s).users for s in cause.sites)
            critical = any(INVENTORY.site(s).critical for s in cause.sites)
            assert cause.priority == ("P1" if users >= 10 or critical else "P2")
            assert cause.affected_users == users
    assert {result.sites[s] for s in MONITORED} <= {
        "up",
        "degraded",
        "down",
        "unknown",
        "maintenance",
    }
