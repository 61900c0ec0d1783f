"""Target hysteresis and site status from the two vantage points, on the example inventory."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.state import StateBook, Vantage
from probes.result import ProbeResult
from sitewatch.config.files import load_inventory

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
AGENTS = {"willowvale-01": "willowvale", "tesko-01": "tesko"}


def book() -> StateBook:
    return StateBook(load_inventory(ROOT / "config" / "inventory.yaml"), dict(AGENTS))


def result(target: str, second: float, *, ok: bool, rtt: float = 5.0) -> ProbeResult:
    return ProbeResult(target, "icmp", T0 + timedelta(seconds=second), ok=ok, rtt_ms=rtt, loss=0.0)


def site(states: StateBook, site_id: str, now: float) -> str:
    return next(v.status for v in states.views(T0.timestamp() + now) if v.id == site_id)


def test_fail_after_and_recover_after_give_hysteresis() -> None:
    states = book()  # defaults: fail_after 3, recover_after 2
    states.heard_from("tesko-01", T0.timestamp())
    outcomes = [
        states.observe("agent", result("tesko-mpls", s, ok=ok))
        for s, ok in enumerate([True, False, False, True, False, False, False, True, True])
    ]
    key: tuple[str, str, Vantage] = ("tesko-mpls", "icmp", "agent")
    assert outcomes == [True, False, False, False, False, False, True, False, True]
    assert states.targets[key].status == "up"
    assert states.targets[key].since == (T0 + timedelta(seconds=8)).timestamp()


def test_a_late_result_is_history_not_news() -> None:
    states = book()
    for second in range(3):
        states.observe("agent", result("tesko-mpls", 100 + second, ok=False))
    assert states.targets[("tesko-mpls", "icmp", "agent")].status == "down"
    for second in range(5):  # a replayed backlog from before the outage
        assert not states.observe("agent", result("tesko-mpls", second, ok=True))
    assert states.targets[("tesko-mpls", "icmp", "agent")].status == "down"


def test_a_result_seen_again_counts_once() -> None:
    """A batch resent after a lost reply, or read back from another collector's store, holds
    results the book applied already: two failures seen twice are still two, not down."""
    states = book()  # fail_after 3
    failures = [result("tesko-mpls", second, ok=False) for second in range(2)]
    for item in [*failures, *failures]:
        states.observe("agent", item)
    key: tuple[str, str, Vantage] = ("tesko-mpls", "icmp", "agent")
    assert states.targets[key].failures == 2
    assert states.targets[key].status != "down"
    assert states.observe("agent", result("tesko-mpls", 2, ok=False))  # the third is news
    assert states.targets[key].status == "down"


def test_rtt_over_the_threshold_degrades_a_link() -> None:
    states = book()
    states.heard_from("tesko-01", T0.timestamp() + 1)
    for second in range(3):
        states.observe("agent", result("tesko-mpls", second, ok=True, rtt=450.0))
    assert site(states, "tesko", 2) == "degraded"


def test_the_agent_counts_while_heard_then_the_centre_decides() -> None:
    states = book()
    assert site(states, "tesko", 0) == "unknown"
    states.heard_from("tesko-01", T0.timestamp())
    states.observe("agent", result("tesko-mpls", 0, ok=True))
    states.observe("centre", result("tesko-mpls", 0, ok=True))
    assert site(states, "tesko", 1) == "up"
    for second in range(1, 4):  # the edge stops answering the centre
        states.observe("centre", result("tesko-mpls", second, ok=False))
    # its far end answered after the failures began: the agent proves a path the centre
    # cannot see (being heard is not enough: its ping of the only link must be the newer)
    states.observe("agent", result("tesko-mpls", 2, ok=True))
    states.heard_from("tesko-01", T0.timestamp() + 2, probed=T0.timestamp() + 2)
    assert site(states, "tesko", 60) == "up"  # within 3 intervals (30 s) the agent still counts
    assert site(states, "tesko", 93) == "down"  # silent, and the centre cannot reach the edge


def test_an_agent_unheard_since_its_links_failed_is_outdated_at_once() -> None:
    states = book()
    states.heard_from("tesko-01", T0.timestamp())
    states.observe("agent", result("tesko-mpls", 0, ok=True))
    for second in range(1, 4):  # the cut: the agent's last batch came before it
        states.observe("centre", result("tesko-mpls", second, ok=False))
    view = next(v for v in states.views(T0.timestamp() + 4) if v.id == "tesko")
    assert (view.status, view.agent_alive) == ("down", False)


def test_a_silent_agent_with_its_edge_answering_is_not_a_site_outage() -> None:
    states = book()
    states.heard_from("tesko-01", T0.timestamp())
    for second in range(3):
        states.observe("centre", result("tesko-mpls", second, ok=True))
    view = next(v for v in states.views(T0.timestamp() + 200) if v.id == "tesko")
    assert (view.status, view.agent_alive) == ("up", False)


def test_a_primary_down_with_the_backup_up_is_degraded() -> None:
    states = book()
    states.heard_from("willowvale-01", T0.timestamp() + 5)
    for second in range(3):
        states.observe("agent", result("willowvale-mpls", second, ok=False))
        states.observe("agent", result("willowvale-fibre", second, ok=True))
    assert site(states, "willowvale", 5) == "degraded"


def test_unmonitored_sites_say_so() -> None:
    assert site(book(), "dutywa-pound", 0) == "unmonitored"


def test_subjects_nobody_watches_are_named_with_the_reason_and_never_unsure() -> None:
    inventory = load_inventory(ROOT / "config" / "inventory.yaml")
    tesko = inventory.site("tesko")
    blind = dataclasses.replace(tesko.links[0], edge=None)  # no edge the centre pings
    sites = tuple(
        dataclasses.replace(s, links=(blind,)) if s.id == "tesko" else s for s in inventory.sites
    )
    states = StateBook(dataclasses.replace(inventory, sites=sites), {"willowvale-01": "willowvale"})
    keys = [
        "link:tesko-mpls",  # no agent at Tesko, no edge: nothing can ever say it is up
        "device:ts-prn-01",  # no agent at Tesko
        "devices:tesko:phone",
        "agent:tesko-01",
        "site:dutywa-pound",  # monitored: false
        "device:gone-01",
        "link:willowvale-mpls",  # its agent is configured: watched, and unknown so far
        "device:wv-prn-01",
    ]
    correlation = states.correlate(T0.timestamp())
    assert states.unwatched(keys) == {
        "link:tesko-mpls": "no longer monitored: its site has no agent configured",
        "device:ts-prn-01": "no longer monitored: its site has no agent configured",
        "devices:tesko:phone": "no longer monitored: its site has no agent configured",
        "agent:tesko-01": "agent no longer configured",
        "site:dutywa-pound": "no longer monitored",
        "device:gone-01": "no longer in the inventory",
    }
    assert states.unsure(correlation, T0.timestamp(), keys) == {
        "link:willowvale-mpls",
        "device:wv-prn-01",
    }
