"""The probe plan's wire form: what the collector builds is what the agent reads back."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from probes.plan import PlanFormatError, build_plan, plan_from_json, plan_to_json
from sitewatch.config.files import load_inventory

ROOT = Path(__file__).resolve().parents[2]


def test_every_example_site_plan_survives_the_wire() -> None:
    inventory = load_inventory(ROOT / "config" / "inventory.yaml")
    for site in inventory.sites:
        plan = build_plan(inventory, site.id)
        assert plan_from_json(json.loads(json.dumps(plan_to_json(plan)))) == plan
        ids = {t.id for t in plan.targets}
        assert ids == {link.id for link in site.links if link.probe} | {d.id for d in site.devices}


def test_the_version_changes_with_the_content_only() -> None:
    inventory = load_inventory(ROOT / "config" / "inventory.yaml")
    first = build_plan(inventory, "customer-care")
    assert build_plan(inventory, "customer-care").version == first.version
    assert build_plan(inventory, "town-hall").version != first.version


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("targets",), "all", "targets: must be a list"),
        (("targets", 0, "role"), "router", "targets[0].role: must be link or device"),
        (("targets", 0, "addresses"), [], "targets[0].addresses: must be a list of addresses"),
        (("targets", 0, "interval"), 0, "targets[0].interval: must be between 0 and 86400"),
        (("targets", 0, "spec", "kind"), "ftp", "targets[0].spec.kind: 'ftp' is not a probe kind"),
        (("targets", 0, "spec", "count"), "3", "targets[0].spec.count: must be a whole number"),
        (("version",), None, "version: must be non-empty text"),
    ],
)
def test_a_bad_plan_names_the_field(path: tuple[Any, ...], value: object, message: str) -> None:
    inventory = load_inventory(ROOT / "config" / "inventory.yaml")
    body = copy.deepcopy(plan_to_json(build_plan(inventory, "willowvale")))
    here: Any = body
    for key in path[:-1]:
        here = here[key]
    here[path[-1]] = value
    with pytest.raises(PlanFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan_from_json(body)
