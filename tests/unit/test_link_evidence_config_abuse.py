"""A careless or hostile inventory's link evidence keys: each refused on one line naming the key.

The example inventory's Willowvale (an MPLS primary and a fibre backup, both watched by their
router's interface and the path probe) is edited the way a hurried administrator might, and
the real `sitewatch check-config` must name the key and exit 1, never print a traceback, never
pass an inventory whose probe could never be sent as written: an interface name Linux would
not take (or would read as another interface: "eth0:1" is eth0's alias label, a NUL ends the
name early), a source address of the other IP family than the far end it pings, an ifName
with a newline that would forge a line in check-config's and the agent's logs.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from probes.plan import PlanFormatError, build_plan, plan_from_json, plan_to_json
from sitewatch.config.files import load_inventory
from tests.conftest import EXAMPLE_INVENTORY

Tree = dict[str, Any]


def willowvale(tree: Tree) -> Tree:
    site: Tree = next(s for s in tree["sites"] if s["id"] == "willowvale")
    return site


def primary(tree: Tree) -> Tree:
    link: Tree = willowvale(tree)["links"][0]
    return link


def setting(key: str, value: object) -> Callable[[Tree], None]:
    """An edit that sets one key of Willowvale's primary link."""

    def edit(tree: Tree) -> None:
        primary(tree)[key] = value

    return edit


def interface(**fields: object) -> Callable[[Tree], None]:
    return setting("interface", {"device": "wv-rtr-01", **fields})


def interface_on(device: str) -> Callable[[Tree], None]:
    return setting("interface", {"device": device, "ifname": "eth0"})


def path(**fields: object) -> Callable[[Tree], None]:
    def edit(tree: Tree) -> None:
        willowvale(tree)["path"] = fields

    return edit


def next_hop(*addresses: str) -> Callable[[Tree], None]:
    return setting("next_hop", list(addresses))


def check_config(tmp_path: Path, edit: Callable[[Tree], None]) -> subprocess.CompletedProcess[str]:
    tree = yaml.safe_load(EXAMPLE_INVENTORY.read_text())
    edit(tree)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(tree, sort_keys=False, allow_unicode=True))
    return subprocess.run(
        [sys.executable, "-m", "sitewatch.cli", "check-config", str(inventory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


REFUSED = [
    ("via-nul", setting("via", "eth\x000"), "links[0].via"),  # the kernel would read "eth"
    ("via-dot", setting("via", "."), "links[0].via"),
    ("via-dotdot", setting("via", ".."), "links[0].via"),
    ("via-alias-label", setting("via", "eth0:1"), "links[0].via"),  # eth0's label, not a device
    ("via-16-bytes", setting("via", "é" * 8), "links[0].via"),  # 8 characters, 16 bytes
    ("via-tab", setting("via", "eth\t0"), "links[0].via"),
    ("source-unspecified", setting("source", "0.0.0.0"), "links[0].source"),  # noqa: S104
    ("source-multicast", setting("source", "224.0.0.1"), "links[0].source"),
    ("source-ipv6-toward-ipv4", setting("source", "2001:db8::2"), "links[0].source"),
    ("ifname-newline", interface(ifname="up0\nsites[0]: forged"), "links[0].interface.ifname"),
    ("ifname-huge", interface(ifname="x" * 100_000), "links[0].interface.ifname"),
    ("next-hop-ipv6-toward-ipv4", next_hop("2001:db8::1"), "links[0].next_hop[0]"),
    ("interface-on-a-printer", interface_on("wv-prn-01"), "links[0].interface.device"),
    ("interface-on-a-phone", interface_on("wv-phone-01"), "links[0].interface.device"),
    ("next-hop-is-toward", path(toward="10.99.6.1", ttl=1), "links[0].next_hop[0]"),
    ("path-toward-unspecified", path(toward="0.0.0.0", ttl=1), "path.toward"),  # noqa: S104
]


@pytest.mark.parametrize(
    ("edit", "key"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED]
)
def test_an_unusable_link_evidence_key_is_named_on_one_line(
    tmp_path: Path, edit: Callable[[Tree], None], key: str
) -> None:
    done = check_config(tmp_path, edit)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    said = done.stdout + done.stderr
    errors = [line for line in said.splitlines() if f"sites[7].{key}" in line]
    assert len(errors) == 1, said
    assert errors[0].startswith(f"{tmp_path / 'inventory.yaml'}:"), errors  # file:line: first


KEPT = [
    ("via-15-characters", setting("via", "a" * 15)),
    ("via-dashes-and-dots", setting("via", "wan-0.100")),  # a VLAN subinterface's usual name
    ("ifname-unicode", interface(ifname="GigabitEthernet0/0 — uplink")),
    ("source-ipv4", setting("source", "10.99.6.2")),
]


@pytest.mark.parametrize("edit", [case[1] for case in KEPT], ids=[case[0] for case in KEPT])
def test_usable_link_evidence_keys_pass(tmp_path: Path, edit: Callable[[Tree], None]) -> None:
    done = check_config(tmp_path, edit)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("target", "key", "value", "message"),
    [
        (1, "ifname", "up0\nforged line", "targets[1].spec.ifname: 'up0\\nforged line' is not"),
        (1, "ifname", "x" * 1_000_000, "targets[1].spec.ifname: 'xxxx"),
        (0, "via", "eth\x000", "targets[0].spec.via: 'eth\\x000' is not an interface name"),
        (0, "via", "eth0:1", "targets[0].spec.via: 'eth0:1' is not an interface name"),
        (0, "via", "..", "targets[0].spec.via: '..' is not an interface name"),
        (0, "source", "0.0.0.0", "targets[0].spec.source: 0.0.0.0 is not one address"),  # noqa: S104
    ],
)
def test_the_plan_an_agent_receives_refuses_what_the_inventory_refuses(
    target: int, key: str, value: str, message: str
) -> None:
    """The wire form is read by the agent: a plan from a bad or older collector is named."""
    body = copy.deepcopy(plan_to_json(build_plan(load_inventory(EXAMPLE_INVENTORY), "willowvale")))
    assert [t["spec"]["kind"] for t in body["targets"][:2]] == ["icmp", "interface"]
    body["targets"][target]["spec"][key] = value
    with pytest.raises(PlanFormatError) as caught:
        plan_from_json(body)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["icmp", "127.0.0.1", "--via", "a" * 16], "--via 'aaaaaaaaaaaaaaaa' is not an interface"),
        (["icmp", "127.0.0.1", "--via", ""], "--via '' is not an interface name"),
        (["icmp", "127.0.0.1", "--source", "notanip"], "--source 'notanip' is not an IP address"),
        (["icmp", "127.0.0.1", "--source", "0.0.0.0"], "--source '0.0.0.0' is not an IP address"),  # noqa: S104
        (["interface", "127.0.0.1", "--ifname", ""], "--ifname '' is not an ifName"),
        (["interface", "127.0.0.1", "--ifname", "up0", "--via", "lo"], "--source and --via apply"),
        (["path", "127.0.0.1", "--source", "127.0.0.1"], "--source and --via apply to icmp only"),
        (["path", "127.0.0.1", "--hop", "a=::1"], "--hop 'a=::1': ::1 is not of 127.0.0.1's"),
        (
            ["path", "127.0.0.1", "--hop", "a=127.0.0.2", "--hop", "b=127.0.0.2"],
            "--hop 'b=127.0.0.2': 127.0.0.2 is already a hop of a",
        ),
    ],
)
def test_sitewatch_probe_refuses_bad_arguments_before_sending(
    args: list[str], message: str
) -> None:
    """A typo is a usage error (exit 2) naming the option, not a probe "unreachable" (exit 0)."""
    done = subprocess.run(
        [sys.executable, "-m", "sitewatch.cli", "probe", *args, "--timeout", "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"sitewatch probe: {message}"), done.stderr


@pytest.mark.parametrize(
    ("hops", "message"),
    [
        (
            [["willowvale-mpls", ["2001:db8::1"]]],
            "hops[0][1][0]: 2001:db8::1 is IPv6, toward is not",
        ),
        (
            [["willowvale-mpls", ["10.99.6.1"]], ["willowvale-fibre", ["10.99.6.1"]]],
            "hops[1][1][0]: 10.99.6.1 is already a hop of willowvale-mpls",
        ),
    ],
)
def test_a_plan_whose_path_hops_cannot_name_one_link_is_refused(
    hops: list[object], message: str
) -> None:
    """A hop under two links would name whichever came first; one of the other family, none."""
    body = copy.deepcopy(plan_to_json(build_plan(load_inventory(EXAMPLE_INVENTORY), "willowvale")))
    (path,) = [t["spec"] for t in body["targets"] if t["spec"]["kind"] == "path"][:1]
    path["hops"] = hops
    with pytest.raises(PlanFormatError) as caught:
        plan_from_json(body)
    assert message in str(caught.value)
