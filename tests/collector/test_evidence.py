"""Link evidence, as a table: which sources say what, and the link, site and incident that follow.

Each row feeds real probe results (at fake probe times) through the state book, as ingest and
the centre's sweep do, then runs a correlation pass. The inventory is the example one with the
evidence the lab gives Willowvale (a router interface and a path probe next hop on each link)
and Elliotdale (its MPLS ping sent from the link's own address); Tesko has one link only.
Defaults: fail_after 3, recover_after 2, so three results a row make a status.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.evidence import result_detail
from collector.heartbeat import Heartbeat
from collector.ingest import Batch
from collector.service import Collector
from collector.state import StateBook, Vantage
from collector.store import Store
from collector.topology import Correlation
from probes.result import JsonValue, ProbeResult
from sitewatch.config.files import load_collector_config, load_inventory
from sitewatch.config.model import Inventory, Link, LinkInterface, PathSpec, Site

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
NOW = 100.0  # seconds after T0: every row's results are older
AGENTS = {"willowvale-01": "willowvale", "tesko-01": "tesko", "elliotdale-01": "elliotdale"}
MPLS, FIBRE = "willowvale-mpls", "willowvale-fibre"
E_MPLS, E_RADIO = "elliotdale-mpls", "elliotdale-wireless"
TESKO = "tesko-mpls"
HOPS = {MPLS: "10.99.6.1", FIBRE: "10.99.7.1"}
UP, DOWN = True, False
EVERY = (0.0, 30.0, 60.0)  # one probe interval apart: three results make a status
Fed = list[tuple[Vantage, ProbeResult]]


def inventory() -> Inventory:
    """The example inventory with path-bound evidence of each kind on two sites."""
    base = load_inventory(ROOT / "config" / "inventory.yaml")

    def bound(site: Site) -> Site:
        if site.id == "willowvale":
            links = tuple(
                dataclasses.replace(
                    link,
                    interface=LinkInterface("wv-rtr-01", f"up{n}", None),
                    next_hop=(ipaddress.ip_address(HOPS[link.id]),),
                )
                for n, link in enumerate(site.links)
            )
            path = PathSpec(ipaddress.ip_address("10.99.0.254"), 1)
            return dataclasses.replace(site, links=links, path=path)
        if site.id == "elliotdale":
            links = tuple(_sourced(link) for link in site.links)
            return dataclasses.replace(site, links=links)
        return site

    return dataclasses.replace(base, sites=tuple(bound(site) for site in base.sites))


def _sourced(link: Link) -> Link:
    if link.id != E_MPLS:
        return link
    return dataclasses.replace(link, source=ipaddress.ip_address("10.99.8.2"))


INVENTORY = inventory()
SITE_OF = {link.id: site.id for site, link in INVENTORY.links()}


def ts(second: float) -> datetime:
    return T0 + timedelta(seconds=second)


def centre(link: str, ok: bool, at: Iterable[float] = EVERY) -> Fed:
    """The centre's pings of the link's edge."""
    return [("centre", _ping(link, ok, s)) for s in at]


def far_end(link: str, ok: bool, at: Iterable[float] = EVERY) -> Fed:
    """The agent's pings of the link's far end (a bound ping when the link has `source`).

    A bound ping's result says how it was sent, as the agent's ICMP probe writes it.
    """
    way: dict[str, JsonValue] = {"source": "10.99.8.2"} if link == E_MPLS else {}
    return [("agent", _ping(link, ok, s, way)) for s in at]


def _ping(
    link: str, ok: bool, second: float, value: dict[str, JsonValue] | None = None
) -> ProbeResult:
    if ok:
        return ProbeResult(
            link, "icmp", ts(second), ok=True, rtt_ms=4.0, loss=0.0, value=value or {}
        )
    return ProbeResult(
        link, "icmp", ts(second), ok=False, loss=1.0, value=value or {}, error_kind="unreachable",
        detail="cannot send",
    )  # fmt: skip


def router(link: str, oper: str | None, at: Iterable[float] = EVERY) -> Fed:
    """The router's IF-MIB row of the link's interface; oper None: the router did not answer."""
    fed: Fed = []
    for s in at:
        value: dict[str, JsonValue] = {"ifindex": 2, "ifname": "up0", "oper": oper, "admin": "up"}
        if oper is None:
            value = dict.fromkeys(value)
            result = ProbeResult(
                link, "interface", ts(s), ok=False, value=value, error_kind="timeout",
                detail="no answer from 10.106.0.1",
            )  # fmt: skip
        elif oper == "up":
            result = ProbeResult(link, "interface", ts(s), ok=True, value=value)
        else:
            detail = f"up0 (ifIndex 2) is {oper}, admin up"
            result = ProbeResult(
                link, "interface", ts(s), ok=False, value=value, error_kind="unexpected",
                detail=detail,
            )  # fmt: skip
        fed.append(("agent", result))
    return fed


def path(link: str, via: str, at: Iterable[float] = EVERY) -> Fed:
    """The path probe of the link: which link's next hop answered at TTL 1."""
    fed: Fed = []
    for s in at:
        value: dict[str, JsonValue] = {
            "toward": "10.99.0.254", "ttl": 1, "hop": HOPS[via], "via": via,
        }  # fmt: skip
        if via == link:
            result = ProbeResult(link, "path", ts(s), ok=True, rtt_ms=1.0, value=value)
        else:
            detail = f"traffic goes via {via} ({HOPS[via]} answered at TTL 1)"
            result = ProbeResult(
                link, "path", ts(s), ok=False, value=value, error_kind="unexpected", detail=detail
            )
        fed.append(("agent", result))
    return fed


def run(*words: Fed, arrival: str = "probe order") -> tuple[StateBook, Correlation]:
    """Feed the results, hear each agent with its newest probe, and correlate at NOW.

    `arrival`: "probe order" (one stream sorted by probe time) or "agents late" (the centre's
    results first, then each agent's batch, as on a busy collector).
    """
    states = StateBook(INVENTORY, dict(AGENTS))
    fed = [item for word in words for item in word]
    if arrival == "probe order":
        fed.sort(key=lambda item: item[1].ts)
    else:
        fed.sort(key=lambda item: (item[0] == "agent", item[1].ts))
    newest: dict[str, float] = {}
    for vantage, result in fed:
        states.observe(vantage, result)
        if vantage == "agent":
            site = SITE_OF[result.target]
            newest[site] = max(newest.get(site, 0.0), result.ts.timestamp())
    for agent, site in AGENTS.items():
        if site in newest:
            states.heard_from(agent, ts(NOW).timestamp(), newest[site])
    return states, states.correlate(ts(NOW).timestamp())


def outcome(correlation: Correlation) -> tuple[object, ...]:
    """What a pass decided: every link and site status and every cause."""
    causes = [(cause.key, cause.priority, cause.sites) for cause in correlation.causes]
    return dict(correlation.links), dict(correlation.sites), causes


class Row(NamedTuple):
    name: str
    words: Sequence[Fed]
    links: dict[str, str]  # link id -> status
    site: tuple[str, str]  # (site id, status)
    causes: list[tuple[str, str]]  # (key, priority)


# fmt: off
TABLE = [
    Row("centre down, agent far end reachable, site with backup",
        [centre(MPLS, DOWN), far_end(MPLS, UP), centre(FIBRE, UP), far_end(FIBRE, UP)],
        {MPLS: "down", FIBRE: "up"}, ("willowvale", "degraded"), [("link:willowvale-mpls", "P2")]),
    Row("router oper down, agent far end reachable",
        [router(MPLS, "down"), far_end(MPLS, UP), router(FIBRE, "up"), far_end(FIBRE, UP)],
        {MPLS: "down", FIBRE: "up"}, ("willowvale", "degraded"), [("link:willowvale-mpls", "P2")]),
    Row("router lowerLayerDown: a failure too",
        [router(MPLS, "lowerLayerDown"), router(FIBRE, "up")],
        {MPLS: "down", FIBRE: "up"}, ("willowvale", "degraded"), [("link:willowvale-mpls", "P2")]),
    Row("path probe says traffic goes via the backup",
        [path(MPLS, FIBRE), path(FIBRE, FIBRE), far_end(MPLS, UP), far_end(FIBRE, UP)],
        {MPLS: "down", FIBRE: "up"}, ("willowvale", "degraded"), [("link:willowvale-mpls", "P2")]),
    Row("path says primary after the centre's failures began: refuted, up",
        [centre(MPLS, DOWN), path(MPLS, MPLS, at=[61.0]), centre(FIBRE, UP)],
        {MPLS: "up", FIBRE: "up"}, ("willowvale", "up"), []),
    Row("path says primary, but before the centre's failures began: down",
        [path(MPLS, MPLS, at=[-1.0]), centre(MPLS, DOWN), centre(FIBRE, UP)],
        {MPLS: "down", FIBRE: "up"}, ("willowvale", "degraded"), [("link:willowvale-mpls", "P2")]),
    Row("interface up but centre down: carrier proves no traffic, down",
        [centre(MPLS, DOWN), router(MPLS, "up", at=[5.0, 35.0, 65.0]), centre(FIBRE, UP)],
        {MPLS: "down", FIBRE: "up"}, ("willowvale", "degraded"), [("link:willowvale-mpls", "P2")]),
    Row("only link: the agent's fresh far end refutes an older centre failure",
        [centre(TESKO, DOWN), far_end(TESKO, UP, at=[5.0, 35.0, 65.0])],
        {TESKO: "up"}, ("tesko", "up"), []),
    Row("only link: the agent's far end older than the centre's failure refutes nothing",
        [far_end(TESKO, UP, at=[-60.0, -30.0]), centre(TESKO, DOWN)],
        {TESKO: "down"}, ("tesko", "down"), [("link:tesko-mpls", "P2")]),
    Row("reachability only on a redundant link: cannot be seen up",
        [far_end(MPLS, UP), far_end(FIBRE, UP)],
        {MPLS: "unknown", FIBRE: "unknown"}, ("willowvale", "up"), []),
    Row("reachability down on a redundant link: not even another path reaches its far end",
        [far_end(MPLS, DOWN), router(FIBRE, "up")],
        {MPLS: "down", FIBRE: "up"}, ("willowvale", "degraded"), [("link:willowvale-mpls", "P2")]),
    Row("an idle backup's path result is no evidence: its old 'up' does not survive",
        [path(FIBRE, FIBRE, at=[0.0, 30.0]), path(FIBRE, MPLS, at=[60.0, 90.0]),
         path(MPLS, FIBRE, at=[0.0, 30.0]), path(MPLS, MPLS, at=[60.0, 90.0])],
        {MPLS: "up", FIBRE: "unknown"}, ("willowvale", "up"), []),
    Row("a router that cannot be read is no evidence: its old 'up' does not survive",
        [router(MPLS, "up", at=[0.0, 30.0]), router(MPLS, None, at=[60.0, 90.0]),
         far_end(MPLS, UP), router(FIBRE, "up")],
        {MPLS: "unknown", FIBRE: "up"}, ("willowvale", "up"), []),
    Row("bound ping fails while the backup's far end answers: down",
        [far_end(E_MPLS, DOWN), far_end(E_RADIO, UP), centre(E_RADIO, UP)],
        {E_MPLS: "down", E_RADIO: "up"}, ("elliotdale", "degraded"),
        [("link:elliotdale-mpls", "P2")]),
    Row("both links down, agent unheard since: the site is cut off",
        [far_end(E_MPLS, UP, at=[-60.0, -30.0]), far_end(E_RADIO, UP, at=[-60.0, -30.0]),
         centre(E_MPLS, DOWN), centre(E_RADIO, DOWN)],
        {E_MPLS: "down", E_RADIO: "down"}, ("elliotdale", "down"),
        [("link:elliotdale-mpls", "P1")]),
    Row("backup down alone: no redundancy, P3",
        [centre(MPLS, UP), far_end(MPLS, UP), centre(FIBRE, DOWN), far_end(FIBRE, UP)],
        {MPLS: "up", FIBRE: "down"}, ("willowvale", "up"), [("link:willowvale-fibre", "P3")]),
]
# fmt: on


@pytest.mark.parametrize("row", TABLE, ids=[row.name for row in TABLE])
@pytest.mark.parametrize("arrival", ["probe order", "agents late"])
def test_evidence_table(row: Row, arrival: str) -> None:
    _, correlation = run(*row.words, arrival=arrival)
    assert {link: correlation.links[link] for link in row.links} == row.links
    site, status = row.site
    assert correlation.sites[site] == status
    assert [(cause.key, cause.priority) for cause in correlation.causes] == row.causes


def test_a_link_shows_every_source_its_conflict_and_its_cause_the_evidence() -> None:
    states, correlation = run(*TABLE[0].words)
    now = ts(NOW).timestamp()
    view = next(v for v in states.views(now, correlation) if v.id == "willowvale")
    mpls = next(link for link in view.links if link.id == MPLS)
    assert (mpls.status, mpls.vantage, mpls.since) == ("down", "centre", ts(60).timestamp())
    assert mpls.conflict == "seen by centre: down; agent: reachable (via backup)"
    assert [(e.source, e.kind, e.status, e.counted, e.detail) for e in mpls.evidence] == [
        ("centre-ping", "path-bound", "down", True, "cannot send"),
        ("far-end-ping", "reachability", "up", False, "4.0 ms"),
    ]
    assert mpls.evidence[0].probed == ts(60).timestamp()
    (cause,) = correlation.causes
    assert cause.title == "Willowvale on its backup: MPLS link willowvale-mpls down"
    assert cause.detail["evidence"] == [
        "centre-ping down: cannot send",
        "far-end-ping up (reachability, not counted): 4.0 ms",
    ]
    assert states.explain(MPLS, now) == (
        "down; centre-ping down: cannot send; far-end-ping up (reachability, not counted): "
        "4.0 ms; conflict: seen by centre: down; agent: reachable (via backup)"
    )


def test_a_refuted_failure_is_shown_as_a_conflict() -> None:
    states, correlation = run(*TABLE[4].words)
    view = next(v for v in states.views(ts(NOW).timestamp(), correlation) if v.id == "willowvale")
    mpls = next(link for link in view.links if link.id == MPLS)
    assert (mpls.status, mpls.vantage) == ("up", "agent")
    assert mpls.conflict == (
        "seen by path probe: up; centre: down, refuted by traffic seen since its failures began"
    )


def test_a_cut_off_sites_cause_names_each_links_evidence() -> None:
    _, correlation = run(*TABLE[14].words)
    (cause,) = correlation.causes
    assert cause.detail["links"] == [E_MPLS, E_RADIO]
    assert cause.detail["evidence"] == [
        "elliotdale-mpls: centre-ping down: cannot send",
        "elliotdale-mpls: bound-ping up (not counted): 4.0 ms",
        "elliotdale-wireless: centre-ping down: cannot send",
        "elliotdale-wireless: far-end-ping up (reachability, not counted): 4.0 ms",
    ]


def test_a_link_incident_resolves_only_on_an_earned_path_bound_up() -> None:
    key = ["link:willowvale-mpls"]
    now = ts(NOW).timestamp()
    # reachability alone never shows the primary back
    states, correlation = run(far_end(MPLS, UP), router(FIBRE, "up"))
    assert states.unsure(correlation, now, key) == {"link:willowvale-mpls"}
    # one path result after silence is taken at its word, but proves no recovery yet
    states, correlation = run(path(MPLS, MPLS, at=[60.0]), router(FIBRE, "up"))
    assert correlation.links[MPLS] == "up"
    assert states.unsure(correlation, now, key) == {"link:willowvale-mpls"}
    # recover_after successes of the centre's ping: recovered
    states, correlation = run(centre(MPLS, DOWN), centre(MPLS, UP, at=[70.0, 80.0]))
    assert correlation.links[MPLS] == "up"
    assert states.unsure(correlation, now, key) == frozenset()


def test_a_late_result_of_a_source_moves_nothing() -> None:
    # the path probe's old success, replayed after its newer "via the backup" results
    states, _ = run(path(MPLS, FIBRE), centre(FIBRE, UP))
    assert not states.observe("agent", path(MPLS, MPLS, at=[61.0 - 120])[0][1])
    correlation = states.correlate(ts(NOW).timestamp())
    assert correlation.links[MPLS] == "down"


def test_a_restarted_collector_reads_interface_and_path_evidence_back(store: Store) -> None:
    """Warm-up replays every kind of link result, not only pings: the primary stays down."""
    config = dataclasses.replace(
        load_collector_config(ROOT / "config" / "collector.yaml"), inventory=INVENTORY
    )
    fed = [*router(MPLS, "down"), *path(MPLS, FIBRE), *router(FIBRE, "up"), *far_end(MPLS, UP)]
    results = sorted((result for _, result in fed), key=lambda result: result.ts)
    now = ts(NOW).timestamp()
    store.results.ingest("willowvale-01", list(enumerate(results, start=1)), received=now)
    collector = Collector(config, store)
    collector.pipeline.warm_up(now=now)
    view = next(v for v in collector.views(now) if v.id == "willowvale")
    assert view.status == "degraded"
    assert {link.id: link.status for link in view.links} == {MPLS: "down", FIBRE: "up"}
    mpls = next(link for link in view.links if link.id == MPLS)
    assert [(e.source, e.status) for e in mpls.evidence] == [
        ("interface", "down"),
        ("path", "down"),
        ("far-end-ping", "up"),
    ]


SECONDS = st.lists(st.integers(-120, 95), unique=True, max_size=6).map(sorted)
OPERS = st.sampled_from(["up", "down", "lowerLayerDown", "dormant", None])


@st.composite
def words(draw: st.DrawFn) -> list[Fed]:
    """Any mix of every source's results about Willowvale's two links, at any probe times."""
    fed: list[Fed] = []
    for link in (MPLS, FIBRE):
        for second in draw(SECONDS):
            fed.append(centre(link, draw(st.booleans()), at=[second]))
        for second in draw(SECONDS):
            fed.append(far_end(link, draw(st.booleans()), at=[second]))
        for second in draw(SECONDS):
            fed.append(router(link, draw(OPERS), at=[second]))
        for second in draw(SECONDS):
            fed.append(path(link, draw(st.sampled_from([MPLS, FIBRE])), at=[second]))
    return fed


@settings(max_examples=200, deadline=None)
@given(fed=words())
def test_nothing_depends_on_the_order_results_arrive_in(fed: list[Fed]) -> None:
    _, in_probe_order = run(*fed)
    _, agents_late = run(*fed, arrival="agents late")
    assert outcome(in_probe_order) == outcome(agents_late)


@settings(max_examples=200, deadline=None)
@given(mpls=st.booleans(), fibre=st.booleans(), at=SECONDS)
def test_reachability_alone_never_shows_a_redundant_link_working(
    mpls: bool, fibre: bool, at: list[int]
) -> None:
    _, correlation = run(far_end(MPLS, mpls, at=at), far_end(FIBRE, fibre, at=at))
    assert correlation.links[MPLS] in ("down", "unknown")
    assert correlation.links[FIBRE] in ("down", "unknown")


def test_an_unbound_ping_of_a_bound_link_is_no_evidence() -> None:
    """An agent too old to bind its ping sends it by any path: its word must not count."""
    book = StateBook(INVENTORY, {"elliotdale-agent": "elliotdale"})
    unbound = [_ping(E_MPLS, True, second) for second in EVERY]  # no source in the value
    book.heard_from("elliotdale-agent", ts(60).timestamp(), ts(60).timestamp())
    for result in unbound:
        book.observe("agent", result)
    assert book.targets[(E_MPLS, "icmp", "agent")].status == "unknown"
    for vantage, result in far_end(E_MPLS, True, at=(90.0, 120.0, 150.0)):
        book.observe(vantage, result)
    assert book.targets[(E_MPLS, "icmp", "agent")].status == "up"


def _unbound_willowvale(*, backup_path_only: bool = False) -> Inventory:
    """Willowvale with nothing that can vouch for a link: only the agent's far-end pings.

    With `backup_path_only`, the fibre keeps its path probe next hop: that sees an idle
    backup never, so it too cannot show the backup back.
    """

    def strip(link: Link) -> Link:
        keep = backup_path_only and link.id == FIBRE
        return dataclasses.replace(
            link, edge=None, interface=None, next_hop=link.next_hop if keep else ()
        )

    def site(site: Site) -> Site:
        if site.id != "willowvale":
            return site
        links = tuple(strip(link) for link in site.links)
        return dataclasses.replace(site, links=links, path=site.path if backup_path_only else None)

    return dataclasses.replace(INVENTORY, sites=tuple(site(s) for s in INVENTORY.sites))


@pytest.mark.parametrize(("link", "backup_path_only"), [(MPLS, False), (FIBRE, True)])
def test_a_link_nothing_can_vouch_for_resolves_on_its_earned_reachability(
    link: str, backup_path_only: bool
) -> None:
    """Its incident was opened by reachability: only reachability can ever close it.

    Waiting for a path-bound 'up' that no configured source can give would hold the incident
    (and its SLA clock) open for ever.
    """
    book = StateBook(_unbound_willowvale(backup_path_only=backup_path_only), dict(AGENTS))
    fed = far_end(link, DOWN)
    for vantage, result in fed:
        book.observe(vantage, result)
    book.heard_from("willowvale-01", ts(60).timestamp(), ts(60).timestamp())
    down = book.correlate(ts(61).timestamp())
    assert down.links[link] == "down"
    key = [f"link:{link}"]
    assert any(cause.key == key[0] for cause in down.causes)
    for vantage, result in far_end(link, UP, at=[70.0, 80.0]):
        book.observe(vantage, result)
    book.heard_from("willowvale-01", ts(NOW).timestamp(), ts(80).timestamp())
    now = ts(NOW).timestamp()
    back = book.correlate(now)
    assert back.links[link] == "unknown"
    assert book.unsure(back, now, key) == frozenset()
    # one success is not yet earned: still unsure
    book = StateBook(_unbound_willowvale(backup_path_only=backup_path_only), dict(AGENTS))
    for vantage, result in [*fed, *far_end(link, UP, at=[70.0])]:
        book.observe(vantage, result)
    book.heard_from("willowvale-01", now, ts(70).timestamp())
    assert book.unsure(book.correlate(now), now, key) == set(key)


def test_results_of_a_source_the_inventory_no_longer_gives_are_no_evidence() -> None:
    """A link's interface taken out of the inventory leaves its stored results behind.

    A restarted collector replays the last hour's results; the agent's new plan reads the
    router no more, so an old reading would stand for ever. Its 'up' must not hide a far end
    that not even another path reaches.
    """

    def site(site: Site) -> Site:
        if site.id != "willowvale":
            return site
        links = tuple(
            dataclasses.replace(link, interface=None, next_hop=(), edge=None)
            if link.id == MPLS
            else link
            for link in site.links
        )
        return dataclasses.replace(site, links=links)

    book = StateBook(
        dataclasses.replace(INVENTORY, sites=tuple(site(s) for s in INVENTORY.sites)),
        dict(AGENTS),
    )
    fed = [
        *router(MPLS, "up"),
        *path(MPLS, MPLS),
        *centre(MPLS, UP),
        *far_end(MPLS, DOWN),
        *router(FIBRE, "up"),
    ]
    for vantage, result in sorted(fed, key=lambda item: item[1].ts):
        book.observe(vantage, result)
    now = ts(NOW).timestamp()
    book.heard_from("willowvale-01", now, ts(60).timestamp())
    assert book.correlate(now).links[MPLS] == "down"
    view = next(v for v in book.views(now) if v.id == "willowvale")
    mpls = next(link for link in view.links if link.id == MPLS)
    assert [e.source for e in mpls.evidence] == ["far-end-ping"]


@pytest.mark.parametrize(
    ("via", "hop", "said"),
    [
        (MPLS, "10.99.6.1", "traffic goes over it (10.99.6.1 answered at TTL 1)"),
        (FIBRE, "10.99.7.1", "traffic goes via willowvale-fibre (10.99.7.1 answered at TTL 1)"),
        (None, "10.9.9.9", "10.9.9.9 answered at TTL 1, the next hop of no link of this site"),
        (None, None, "no hop answered at TTL 1"),
    ],
)
def test_a_path_result_without_a_detail_is_described_by_who_answered(
    via: str | None, hop: str | None, said: str
) -> None:
    """An agent may send a result with no detail: what staff read must follow its value."""
    value: dict[str, JsonValue] = {"toward": "10.99.0.254", "ttl": 1, "hop": hop, "via": via}
    result = ProbeResult(MPLS, "path", ts(0), ok=via == MPLS, value=value)
    assert result_detail(result) == said


def test_a_refuted_down_recovers_on_the_proof_of_flow_not_on_the_carrier() -> None:
    """The centre's failures refuted by one path result: the link reads up on that result.

    The router's interface read up all through the cut (carrier only), so it proves no
    recovery: the incident waits until the traffic that refuted the failures is earned, and
    the link is up since that traffic was seen, not since before the cut.
    """
    key = ["link:willowvale-mpls"]
    now = ts(NOW).timestamp()
    carrier = router(MPLS, "up", at=[-55.0, -25.0, 5.0, 35.0, 65.0])
    states, correlation = run(
        centre(MPLS, DOWN), carrier, path(MPLS, MPLS, at=[61.0]), router(FIBRE, "up")
    )
    assert correlation.links[MPLS] == "up"
    assert states.unsure(correlation, now, key) == set(key)
    view = next(v for v in states.views(now, correlation) if v.id == "willowvale")
    mpls = next(link for link in view.links if link.id == MPLS)
    assert mpls.since == ts(61.0).timestamp()
    assert mpls.conflict is not None
    assert mpls.conflict.startswith("seen by path probe: up;")
    # once the traffic is seen recover_after times, the incident may resolve
    states, correlation = run(
        centre(MPLS, DOWN), carrier, path(MPLS, MPLS, at=[61.0, 91.0]), router(FIBRE, "up")
    )
    assert states.unsure(correlation, now, key) == frozenset()


def test_an_agents_detail_cannot_forge_a_line_of_the_collectors_log() -> None:
    """A status change is logged, and kept in the status log, as one line with its evidence.

    A detail comes from the agent as any text; a line break in it would start a line of its
    own in the collector's log, written as the collector's.
    """
    forged = "up0 is down\n2026-11-30 08:00:00,000 ERROR collector.service: forged"
    fed = [
        (vantage, dataclasses.replace(result, detail=forged))
        for vantage, result in router(MPLS, "down")
    ]
    states, correlation = run(fed, router(FIBRE, "up"))
    assert correlation.links[MPLS] == "down"
    said = states.explain(MPLS, ts(NOW).timestamp())
    assert "\n" not in said
    assert "interface down: up0 is down 2026-11-30 08:00:00,000 ERROR" in said
    (cause,) = correlation.causes
    assert all("\n" not in note for note in cause.detail["evidence"])


def test_a_backlog_replayed_after_a_cut_is_history_not_news() -> None:
    """The readings an agent replays when its cut heals say how the links were then.

    Counted as news they would show both links down with the agent heard, and open a P2 for
    the primary and a P3 for the backup about an outage that is over; the agent's batches
    arriving at all prove the site reachable now.
    """
    book = StateBook(INVENTORY, {"willowvale-agent": "willowvale"})
    before = router(MPLS, "up", at=[-3700, -3670, -3640]) + router(FIBRE, "up", at=[-3700, -3670])
    for vantage, result in sorted(before, key=lambda fed: fed[1].ts):
        book.observe(vantage, result)
    book.heard_from("willowvale-agent", ts(-3640).timestamp(), ts(-3640).timestamp())
    now = ts(0).timestamp()
    silent = book.correlate(now)
    assert [cause.key for cause in silent.causes] == ["site:willowvale"]
    during = [-3600.0, -3570.0, -3540.0]
    backlog = router(MPLS, "down", at=during) + router(FIBRE, "down", at=during)
    for vantage, result in sorted(backlog, key=lambda fed: fed[1].ts):
        book.observe(vantage, result)
    book.heard_from("willowvale-agent", now, ts(-3540).timestamp())
    replaying = book.correlate(now)
    assert replaying.causes == ()
    assert replaying.sites["willowvale"] == "up"  # heard again: reachable by some path
    assert {replaying.links[MPLS], replaying.links[FIBRE]} == {"unknown"}
    fresh = router(MPLS, "up", at=[-2.0, -1.0, 0.0]) + router(FIBRE, "up", at=[-2.0, -1.0, 0.0])
    for vantage, result in sorted(fresh, key=lambda fed: fed[1].ts):
        book.observe(vantage, result)
    assert book.correlate(now).links[MPLS] == "up"


def test_an_agent_clock_ahead_is_corrected_before_its_words_are_weighed() -> None:
    """An agent whose clock runs 60 s fast stamps its pre-cut successes after the cut.

    Taken at face value, its path probe's last success "after" the centre's failures began
    would refute them, hiding the cut; its heartbeat's clock shows the offset.
    """
    book = StateBook(INVENTORY, {"willowvale-agent": "willowvale"})
    ahead = 60.0
    book.agent_clock("willowvale-agent", ts(0).timestamp(), ts(ahead).timestamp())
    for vantage, result in path(MPLS, MPLS, at=[ahead - 40, ahead - 35, ahead - 30]):
        book.observe(vantage, result)  # taken at -40..-30 s, stamped +20..+30 s
    for vantage, result in centre(MPLS, False, at=[-20.0, -19.0, -18.0]):
        book.observe(vantage, result)
    book.heard_from("willowvale-agent", ts(-18).timestamp(), ts(ahead - 30).timestamp())
    assert book.correlate(ts(-18).timestamp()).links[MPLS] == "down"
    skewed = StateBook(INVENTORY, {"willowvale-agent": "willowvale"})  # no heartbeat seen
    for vantage, result in path(MPLS, MPLS, at=[ahead - 40, ahead - 35, ahead - 30]):
        skewed.observe(vantage, result)
    for vantage, result in centre(MPLS, False, at=[-20.0, -19.0, -18.0]):
        skewed.observe(vantage, result)
    skewed.heard_from("willowvale-agent", ts(-18).timestamp(), ts(ahead - 30).timestamp())
    assert skewed.correlate(ts(-18).timestamp()).links[MPLS] == "up"  # fooled without it


async def test_a_heartbeat_s_clock_gives_the_agent_s_offset(store: Store) -> None:
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    agent = next(a for a in config.agents if a.site == "willowvale")
    collector = Collector(dataclasses.replace(config, inventory=INVENTORY), store)
    clock = datetime.now(UTC) + timedelta(seconds=90)  # the agent's clock runs 90 s fast
    batch = Batch((), Heartbeat(agent.id, clock=clock), outbox="o1")
    await collector.ingest(agent, batch)
    assert collector.pipeline.book.clock_offset["willowvale"] == pytest.approx(-90, abs=5)


def test_the_clock_offset_is_the_smallest_recent_one_and_transit_is_no_offset() -> None:
    """A heartbeat stuck seconds on a failing link must not shift the agent's clock by them.

    Transit only adds to `received - clock`, so the smallest recent sample is the truest;
    a few seconds either way is transit on a synchronised clock and corrects nothing.
    """
    book = StateBook(INVENTORY, {"willowvale-agent": "willowvale"})
    book.agent_clock("willowvale-agent", 1_000.3, 1_000.0)  # NTP-synchronised, 0.3 s transit
    assert book.clock_offset["willowvale"] == 0.0
    book.agent_clock("willowvale-agent", 1_038.0, 1_030.0)  # a post stuck 8 s on the cut link
    assert book.clock_offset["willowvale"] == 0.0  # the 0.3 s sample still stands
    slow = StateBook(INVENTORY, {"willowvale-agent": "willowvale"})
    slow.agent_clock("willowvale-agent", 1_000.2, 880.0)  # the agent's clock 2 min slow
    slow.agent_clock("willowvale-agent", 1_039.0, 910.0)  # and one stuck 9 s in transit
    assert slow.clock_offset["willowvale"] == pytest.approx(120.2)
