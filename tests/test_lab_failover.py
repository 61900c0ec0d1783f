"""Failover end to end on the lab, with one core kept busy: a backup never hides a dead primary.

Issue 12's proof. The collector runs on the hub and an agent in every site's namespace, with the
fast example timings (1 s interval, fail after 2, recover after 1), while another process keeps
one core busy for the whole module (as on a small collector VM doing a backup). A cut link's far
end still answers the site over its backup, so only evidence bound to the link can tell: each
scenario runs once per evidence variant of the collector's inventory (the lab is always built
from the full example):

- full: the centre's pings of the edges, the router's IF-MIB and the path probe;
- interface: only the router's ifOperStatus is path-bound (no edge, no next_hop/path);
- path: only the path probe is (no edge, no interface).

Scenarios: a primary cut with its backup up is one P2 for the primary, the site degraded, opened
within fail_after x interval + 4 s of the cut, resolved by the restore; a backup cut alone is one
P3 for the backup (with only the path probe it cannot be seen: an idle backup carries no traffic,
so no incident); both links cut is one P1 for the site. SITEWATCH_FAILOVER_RUNS repeats each
scenario (1 by default; `make soak` runs 5).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from collector.state import SILENT_AFTER_AT_LEAST
from tests.deploy import Deployment, InventoryEdit, on_lab
from tests.lab import Lab, wait_until

pytestmark = pytest.mark.lab
RUNS = int(os.environ.get("SITEWATCH_FAILOVER_RUNS", "1"))
REPEATED = pytest.mark.parametrize("run", range(1, RUNS + 1))
OPENED_WITHIN = 2 * 1.0 + 4  # fail_after x interval + 4 s: the bound for the P2
REDUNDANT = ("dutywa-workshop", "willowvale", "elliotdale")  # sites with a primary and a backup
PORTS = {"full": 18_090, "interface": 18_091, "path": 18_092}


def _strip(*keys: str, site_keys: tuple[str, ...] = ()) -> InventoryEdit:
    """Return an edit removing `keys` from the redundant sites' links (and `site_keys`)."""

    def edit(tree: dict[str, Any]) -> None:
        tree["priorities"]["reopen_window"] = "1s"  # each run opens its own incident
        for site in tree["sites"]:
            if site["id"] not in REDUNDANT:
                continue
            for key in site_keys:
                site.pop(key, None)
            for link in site["links"]:
                for key in keys:
                    link.pop(key, None)

    return edit


VARIANTS: dict[str, InventoryEdit] = {
    "full": _strip(),
    "interface": _strip("edge", "next_hop", site_keys=("path",)),
    "path": _strip("edge", "interface"),
}


@dataclass(frozen=True)
class Running:
    """A deployment on the lab with one evidence variant of the collector's inventory."""

    variant: str
    deployment: Deployment
    lab: Lab


@pytest.fixture(scope="module", params=list(VARIANTS))
def running(
    request: pytest.FixtureRequest,
    busy_core: int,
    lab: Lab,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:
    variant: str = request.param
    folder = tmp_path_factory.mktemp(f"failover-{variant}")
    with on_lab(lab, folder, PORTS[variant], edit=VARIANTS[variant]) as deployment:
        yield Running(variant, deployment, lab)


@pytest.fixture
def calm(running: Running, whole_lab: Lab) -> set[int]:
    """Start from a whole lab, every site up, no incident open; give the incidents so far."""
    deployment, sites = running.deployment, list(whole_lab.plan.sites)
    wait_until(lambda: deployment.calm(sites), 60, "every site up, no incident open")
    # Every redundant link seen up first (an agent reads its router a few seconds after it
    # starts); an idle backup has no path-bound evidence in the path-only variant.
    expected = {
        link.id: "up"
        for link in whole_lab.plan.links
        if link.child.node in REDUNDANT and (link.role == "primary" or running.variant != "path")
    }
    wait_until(lambda: links_now(deployment, expected) == expected, 60, "redundant links up")
    return {incident["id"] for incident in all_incidents(deployment)}


def all_incidents(deployment: Deployment) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = deployment.api("/api/v1/incidents?status=all")
    return found


def new_incidents(deployment: Deployment, before: set[int]) -> list[dict[str, Any]]:
    """Incidents opened since `before` was taken, and any old one opened again."""
    return [
        incident
        for incident in all_incidents(deployment)
        if incident["id"] not in before or incident["status"] != "resolved"
    ]


def links_now(deployment: Deployment, wanted: dict[str, str]) -> dict[str, str]:
    """Return the status of the `wanted` links of the redundant sites."""
    found = {}
    for site in REDUNDANT:
        for entry in deployment.site(site)["links"]:
            if entry["id"] in wanted:
                found[entry["id"]] = str(entry["status"])
    return found


def link_status(deployment: Deployment, site: str, link: str) -> str:
    links = {entry["id"]: entry for entry in deployment.site(site)["links"]}
    status: str = links[link]["status"]
    return status


def evidence_since(deployment: Deployment, link: str, start: float) -> list[str]:
    """Each result stored for `link` since `start`: when probed and received, seconds after."""
    with sqlite3.connect(f"file:{deployment.database}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT ts, received, source, kind, ok FROM results"
            " WHERE target = ? AND ts >= ? ORDER BY ts",
            (link, start - 1),
        ).fetchall()
    db.close()
    return [
        f"{ts - start:+.2f} {got - start:+.2f} {src} {kind} {ok}" for ts, got, src, kind, ok in rows
    ]


def open_one(deployment: Deployment, before: set[int], within: float = 30) -> dict[str, Any]:
    """Wait for the scenario's first incident; return it once it is the only new one."""
    wait_until(lambda: bool(new_incidents(deployment, before)), within, "an incident opened")
    found = new_incidents(deployment, before)
    assert len(found) == 1, [(i["key"], i["priority"]) for i in found]
    return found[0]


def resolve(running: Running, before: set[int], incident: dict[str, Any]) -> None:
    """Restore the lab; the incident resolves by itself and nothing else was opened."""
    deployment = running.deployment
    running.lab.restore_all()
    wait_until(lambda: not deployment.api("/api/v1/incidents?status=open"), 60,
               "the incident resolved after the restore")  # fmt: skip
    found = new_incidents(deployment, before)
    assert [(i["id"], i["status"]) for i in found] == [(incident["id"], "resolved")], found
    assert deployment.api(f"/api/v1/incidents/{incident['id']}")["resolved_by"] is None


@REPEATED
def test_a_cut_primary_with_its_backup_up_is_one_p2_within_the_bound(
    running: Running, calm: set[int], run: int
) -> None:
    deployment, lab = running.deployment, running.lab
    cut_at = time.time()
    lab.cut_link("willowvale-mpls")
    incident = open_one(deployment, calm)
    opened_after = datetime.fromisoformat(incident["opened_at"]).timestamp() - cut_at
    assert (incident["key"], incident["priority"]) == ("link:willowvale-mpls", "P2"), incident
    assert incident["sites"] == ["willowvale"]
    assert opened_after <= OPENED_WITHIN, (
        f"opened {opened_after:.1f} s after the cut; evidence since (probed, received, source,"
        f" kind, ok): {evidence_since(deployment, 'willowvale-mpls', cut_at)}"
    )
    wait_until(lambda: deployment.site("willowvale")["status"] == "degraded", 10,
               "willowvale degraded")  # fmt: skip
    site = deployment.site("willowvale")
    assert site["agent_alive"] is True  # it reports over its backup all along
    assert link_status(deployment, "willowvale", "willowvale-mpls") == "down"
    wait_until(lambda: link_status(deployment, "willowvale", "willowvale-fibre") == "up", 10,
               "the backup seen carrying the traffic")  # fmt: skip
    resolve(running, calm, incident)
    assert link_status(deployment, "willowvale", "willowvale-mpls") == "up"


@REPEATED
def test_a_cut_backup_alone_is_one_p3(running: Running, calm: set[int], run: int) -> None:
    deployment, lab = running.deployment, running.lab
    lab.cut_link("workshop-fibre")
    if running.variant == "path":
        # An idle backup carries no traffic, so the path probe says nothing of it, and the
        # agent's ping of its far end answers over the primary: nothing can open. Watched
        # for as long as the other variants take to open their P3.
        deadline = time.monotonic() + OPENED_WITHIN + 2
        while time.monotonic() < deadline:
            assert new_incidents(deployment, calm) == []
            assert link_status(deployment, "dutywa-workshop", "workshop-fibre") != "down"
        lab.restore_all()
        return
    incident = open_one(deployment, calm)
    assert (incident["key"], incident["priority"]) == ("link:workshop-fibre", "P3"), incident
    assert incident["sites"] == ["dutywa-workshop"]
    assert deployment.site("dutywa-workshop")["status"] == "up"  # on its primary, as planned
    assert link_status(deployment, "dutywa-workshop", "workshop-fibre") == "down"
    resolve(running, calm, incident)


@REPEATED
def test_both_links_cut_is_one_p1_for_the_site(running: Running, calm: set[int], run: int) -> None:
    deployment, lab = running.deployment, running.lab
    lab.cut_links("elliotdale-mpls", "elliotdale-wireless")
    # Without the centre's pings nothing can tell until the agent's silence is long enough
    # to be sure of (SILENT_AFTER_AT_LEAST): its last word was both links up.
    full = running.variant == "full"
    incident = open_one(deployment, calm, 30 if full else SILENT_AFTER_AT_LEAST + 30)
    wait_until(lambda: deployment.site("elliotdale")["status"] == "down", 30, "elliotdale down")
    # Seen from the centre (the edges) it is the links; without them, the agent's silence.
    key = "link:elliotdale-mpls" if full else "site:elliotdale"
    found = new_incidents(deployment, calm)
    assert [(i["key"], i["priority"]) for i in found] == [(key, "P1")], found
    assert (incident["sites"], incident["affected_users"]) == (["elliotdale"], 15)
    resolve(running, calm, incident)
