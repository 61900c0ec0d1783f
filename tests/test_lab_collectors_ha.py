"""Two collectors on the lab's hub, one PostgreSQL database: losing one loses nothing and
duplicates nothing.

Issue 14's proof end to end, with one core kept busy. The collector listens on the hub's
address and the standby on its second one, both on one database; every agent is given both
URLs. Customer Care's MPLS link is cut (Customer Care and Town Hall behind it go dark), and the
leader is killed -9 as it opens the outage's incident: PagerDuty (a receiver on loopback) holds
its trigger unanswered, so the kill lands between the send and its record. The other takes
over, the agents move to it, and the outage stays one incident; its trigger goes out once more
when the dead leader's claim runs out, with the same dedup_key (the one duplicate a failover
may cost). Then the second is killed too, and the first started again: it leads from the
database alone, and the same holds. After the restore the incident resolves once, and the
history has no hole: every result each agent probed is stored, and the collectors' own gaps
are rebuilt from them, so no site or link has a second of unknown from before the cut to after
the restore. Tesko's link has no edge for the centre to ping in the collectors' inventory, so
only its agent's backlog can fill its part of the gaps.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from collector.availability import availability
from collector.store import Store
from probes.plan import build_plan
from sitewatch.config.files import load_inventory
from tests import pg
from tests.deploy import COLLECTOR, STANDBY, Deployment, InventoryEdit, on_lab
from tests.lab import Lab, LabError, wait_until
from tests.receivers import WebhookReceiver

pytestmark = pytest.mark.lab
PORT = 18_095  # both collectors', each on its own address
PAGERDUTY = "/v2/enqueue"
CUT = "customer-care-mpls"
CAUSE = f"link:{CUT}"
CHAIN = ("customer-care", "town-hall")
TAKEOVER_WITHIN = 10.0  # seconds from a leader's death to a follower leading: the bound
DEADLINE = 60.0  # for everything else awaited
RESENT_WITHIN = 10.0 + 15.0 + DEADLINE  # a dead leader's claim (collector.notify) and then some


def agent_only(tree: dict[str, Any]) -> None:
    """Tesko's link without its edge: only the agent's ping of its only link speaks of it."""
    (tesko,) = [site for site in tree["sites"] if site["id"] == "tesko"]
    for link in tesko["links"]:
        link.pop("edge")


AGENT_ONLY: InventoryEdit = agent_only


@dataclass(frozen=True)
class Pair:
    """The lab's two collectors with their database and their PagerDuty receiver."""

    deployment: Deployment
    database: str
    pagerduty: WebhookReceiver
    lab: Lab

    def role(self, name: str) -> str | None:
        """Return what COLLECTOR or STANDBY says it is at /healthz (None: it does not answer)."""
        health = self.deployment.health(self.deployment.url_of(name))
        return None if health is None else str(health["role"])

    def leader(self) -> str:
        leading = [name for name in (COLLECTOR, STANDBY) if self.role(name) == "leader"]
        assert len(leading) == 1, leading
        return leading[0]

    def api(self, name: str, path: str) -> Any:
        return self.deployment.api(path, at=self.deployment.url_of(name))

    def incidents(self) -> list[tuple[Any, ...]]:
        """Every incident the database holds: (id, key, status, opened_at)."""
        with psycopg.connect(self.database, connect_timeout=10) as conn:
            return conn.execute(
                "SELECT id, key, status, opened_at FROM incidents ORDER BY id"
            ).fetchall()

    def newest(self, column: str) -> dict[str, float]:
        """The newest `column` ("ts": probed, "received") of the results stored per source."""
        assert column in ("ts", "received")
        query = f"SELECT source, max({column}) FROM results GROUP BY source"  # noqa: S608
        with psycopg.connect(self.database, connect_timeout=10) as conn:
            return {source: float(at) for source, at in conn.execute(query).fetchall()}

    def stored_since(self, sites: list[str], since: float) -> bool:
        """Whether every one of `sites`' agents had a result stored after `since`."""
        newest = self.newest("received")
        return all(newest.get(self.deployment.agent_id(s), 0.0) > since for s in sites)

    def events(self, action: str) -> list[dict[str, Any]]:
        """The PagerDuty events received with `action` (trigger, resolve)."""
        hooks = self.pagerduty.received(PAGERDUTY)
        return [h.body for h in hooks if h.body["event_action"] == action]

    def whole(self, name: str, sites: list[str]) -> bool:
        """Whether COLLECTOR or STANDBY sees `sites` up, their agents heard and links up."""
        views = {view["id"]: view for view in self.api(name, "/api/v1/sites")}
        links = [link["status"] for s in sites for link in views[s]["links"]]
        return self.heard(name, sites) and set(links) == {"up"}

    def statuses(self, name: str, sites: tuple[str, ...]) -> dict[str, str]:
        """What COLLECTOR or STANDBY says of each of `sites`."""
        return {s: self.api(name, f"/api/v1/sites/{s}")["status"] for s in sites}

    def heard(self, name: str, sites: list[str]) -> bool:
        """Whether COLLECTOR or STANDBY sees `sites` up, each with its agent heard."""
        views = {view["id"]: view for view in self.api(name, "/api/v1/sites")}
        return all(views[s]["status"] == "up" and views[s]["agent_alive"] for s in sites)


@pytest.fixture(scope="module")
def pair(
    lab: Lab,
    busy_core: int,
    postgres_server: pg.PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pair]:
    made = postgres_server.create_database("lab_collectors_ha")
    database = postgres_server.url(made)
    try:
        with WebhookReceiver() as pagerduty:
            receiver = (
                "notify:\n"
                f"  - {{kind: webhook, url: '{pagerduty.url(PAGERDUTY)}', format: pagerduty,"
                " routing_key: R0UT1NGKEY0123456789abcdef012345}\n"
            )
            folder = tmp_path_factory.mktemp("collectors-ha")
            with on_lab(
                lab, folder, PORT, receiver, AGENT_ONLY, database=database, standby=True
            ) as deployment:
                yield Pair(deployment, database, pagerduty, lab)
    finally:
        postgres_server.drop_database(made)


def one_outage_once(pair: Pair) -> tuple[Any, ...]:
    """Check the cut is one incident, opened once, its triggers all with its key."""
    incidents = pair.incidents()
    assert [(key, status) for _, key, status, _ in incidents] == [(CAUSE, "open")], incidents
    triggers = pair.events("trigger")
    assert 1 <= len(triggers) <= 2, triggers  # the held one, and its resend after the failover
    assert {t["dedup_key"] for t in triggers} == {CAUSE}
    return tuple(incidents[0])


def backlog_grows(pair: Pair, site: str, results: int) -> None:
    """Wait until `site`'s agent holds `results` more results than now: it probes on unheard."""
    depth = pair.deployment.outbox_depth(site)
    wait_until(
        lambda: pair.deployment.outbox_depth(site) >= depth + results,
        DEADLINE,
        f"{site}'s agent keeping {results} more results",
    )


def test_losing_either_collector_loses_nothing_and_duplicates_nothing(
    pair: Pair, whole_lab: Lab
) -> None:
    deployment = pair.deployment
    sites = list(whole_lab.plan.sites)
    others = [site for site in sites if site not in CHAIN]
    first = pair.leader()
    second = STANDBY if first == COLLECTOR else COLLECTOR
    wait_until(  # from here on, no second of unknown anywhere
        lambda: pair.whole(first, sites) and pair.whole(second, sites),
        DEADLINE,
        "every link up on both",
    )
    calm_at = time.time()

    pair.pagerduty.hold_next()
    whole_lab.cut_link(CUT)
    # Killed with its trigger at PagerDuty unanswered: sent, not recorded as sent
    held = "the leader's trigger reaching PagerDuty"
    wait_until(pair.pagerduty.holding.is_set, DEADLINE, held, poll=0.01)
    deployment.kill(first, signal.SIGKILL)
    killed_at = time.time()
    pair.pagerduty.release()
    wait_until(lambda: pair.role(second) == "leader", TAKEOVER_WITHIN, "the follower taking over")
    wait_until(
        lambda: pair.stored_since(others, killed_at), DEADLINE, "the agents moving to the second"
    )
    opened = one_outage_once(pair)
    down = dict.fromkeys(CHAIN, "down")  # the state it leads from is current: it followed
    with contextlib.suppress(LabError):
        wait_until(lambda: pair.statuses(second, CHAIN) == down, TAKEOVER_WITHIN, "chain down")
    assert pair.statuses(second, CHAIN) == down

    # Nobody watches for a while; then the first comes back, alone, and leads from the database
    deployment.kill(second, signal.SIGKILL)
    per_second = len(build_plan(load_inventory(deployment.inventory), "tesko").targets)
    backlog_grows(pair, "tesko", 3 * per_second)
    restarted_at = time.time()
    deployment.start_collector(first)
    wait_until(lambda: pair.role(first) == "leader", TAKEOVER_WITHIN, "the first leading again")
    wait_until(
        lambda: pair.stored_since(others, restarted_at), DEADLINE, "the agents back at the first"
    )
    assert one_outage_once(pair) == opened  # the same incident, its opening unchanged
    assert [i["key"] for i in pair.api(first, "/api/v1/incidents?status=open")] == [CAUSE]

    whole_lab.restore_link(CUT)
    wait_until(
        lambda: [status for _, _, status, _ in pair.incidents()] == ["resolved"],
        DEADLINE,
        "the outage's incident resolved",
    )
    wait_until(lambda: bool(pair.events("resolve")), DEADLINE, "its resolution notified")
    wait_until(lambda: len(pair.events("trigger")) == 2, RESENT_WITHIN, "the trigger resent")
    restored_at = time.time()
    wait_until(lambda: pair.heard(first, sites), DEADLINE, "every site up again, heard")
    agents = {deployment.agent_id(site) for site in sites}
    wait_until(  # what the agents probed meanwhile: an outbox ships its oldest first
        lambda: all(pair.newest("ts").get(agent, 0.0) > restored_at for agent in agents),
        DEADLINE,
        "every agent's backlog stored",
    )
    assert [(key, status) for _, key, status, _ in pair.incidents()] == [(CAUSE, "resolved")]
    assert [e["dedup_key"] for e in pair.events("resolve")] == [CAUSE]  # resolved once
    assert [e["dedup_key"] for e in pair.events("trigger")] == [CAUSE, CAUSE]  # one duplicate
    for site in sites:  # nothing an agent acknowledged was lost between the collectors
        stored = deployment.stored_sequences(deployment.agent_id(site))
        assert stored == list(range(1, stored[-1] + 1)), site

    # The collectors' gaps, rebuilt from the agents' results: no second unknown, anywhere
    entities = [f"site:{site}" for site in sites]
    entities += [f"link:{link.id}" for link in whole_lab.plan.links]
    store = Store(pair.database, readonly=True)

    def unknown() -> dict[str, float]:
        found = {e: availability(store, e, calm_at, restored_at).always for e in entities}
        return {e: durations.unknown for e, durations in found.items() if durations.unknown}

    try:
        with contextlib.suppress(LabError):
            wait_until(lambda: not unknown(), DEADLINE, "the collectors' gaps rebuilt")
        assert unknown() == {}
    finally:
        store.close()
