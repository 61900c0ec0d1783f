"""Load configuration files, and tell the three kinds apart by their content.

`check-config` takes any mix of inventory, agent and collector files, so each file says what it
is by its keys: an inventory has `sites`, a collector file `inventory`, an agent file
`collector`. Files given together are checked against each other too: an agent's site must be
in the inventory, and a collector that lists the agent must list it for the same site.

A file can also be valid but worth a second look: an inventory link of a site with a backup
that no path-bound evidence watches (a failover to or from it cannot be seen). Those come back
as warnings, which do not make the file fail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from sitewatch.config.agent import build_agent_config
from sitewatch.config.collector import build_collector_config
from sitewatch.config.errors import ConfigError, Problem
from sitewatch.config.inventory import build_inventory, link_warnings
from sitewatch.config.model import AgentConfig, CollectorConfig, Inventory
from sitewatch.config.yamltree import Node, parse

MAX_FILE_BYTES = 4 * 2**20  # an inventory of thousands of sites is far smaller


class Kind(Enum):
    """The three kinds of configuration file."""

    INVENTORY = "inventory"
    AGENT = "agent"
    COLLECTOR = "collector"


def read_tree(path: Path) -> Node:
    """Return the YAML node tree of a file, or raise ConfigError."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ConfigError([Problem(str(path), None, "", f"cannot read: {err.strerror}")]) from err
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError([Problem(str(path), None, "", "larger than 4 MiB: not a config file")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            [Problem(str(path), None, "", f"not UTF-8 text (byte {err.start})")]
        ) from err
    return parse(text, str(path))


def load_inventory(path: Path) -> Inventory:
    """Return the validated inventory in `path`, or raise ConfigError."""
    return build_inventory(read_tree(path), path)


def load_agent_config(path: Path) -> AgentConfig:
    """Return the validated agent configuration in `path`, or raise ConfigError."""
    return build_agent_config(read_tree(path), path)


def load_collector_config(path: Path) -> CollectorConfig:
    """Return the validated collector configuration and its inventory, or raise ConfigError."""
    return build_collector_config(read_tree(path), path, load_inventory)


def detect_kind(root: Node) -> Kind | None:
    """Return which kind of file `root` is, judged by its top-level keys."""
    if not isinstance(root.value, dict):
        return None
    keys = root.value.keys()
    if "sites" in keys:
        return Kind.INVENTORY
    if "inventory" in keys or "listen" in keys:
        return Kind.COLLECTOR
    if "collector" in keys:
        return Kind.AGENT
    return None


@dataclass(frozen=True, slots=True)
class CheckedFile:
    """The outcome of checking one file: its kind, its problems (none means ok), its warnings.

    Warnings never make a file fail; they are printed with it.
    """

    path: Path
    kind: Kind | None
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...] = ()


def check_files(paths: Iterable[Path]) -> list[CheckedFile]:
    """Check each file, then the files against each other; return one outcome per file."""
    outcomes: list[CheckedFile] = []
    loaded: list[tuple[Path, Node, Inventory | AgentConfig | CollectorConfig]] = []
    for path in paths:
        try:
            root = read_tree(path)
        except ConfigError as err:
            outcomes.append(CheckedFile(path, None, err.problems))
            continue
        kind = detect_kind(root)
        if kind is None:
            problem = Problem(
                str(path),
                root.line,
                "",
                "cannot tell what kind of file this is: an inventory has 'sites:', "
                "a collector file 'inventory:', an agent file 'collector:'",
            )
            outcomes.append(CheckedFile(path, None, (problem,)))
            continue
        try:
            config: Inventory | AgentConfig | CollectorConfig
            if kind is Kind.INVENTORY:
                config = build_inventory(root, path)
            elif kind is Kind.AGENT:
                config = build_agent_config(root, path)
            else:
                config = build_collector_config(root, path, load_inventory)
        except ConfigError as err:
            outcomes.append(CheckedFile(path, kind, err.problems))
            continue
        loaded.append((path, root, config))
        outcomes.append(CheckedFile(path, kind, ()))
    cross = _cross_check(loaded)
    warnings = _warnings(loaded)
    return [
        dataclasses.replace(
            o,
            problems=o.problems + tuple(cross.get(o.path, ())),
            warnings=warnings.get(o.path, ()),
        )
        for o in outcomes
    ]


def _warnings(
    loaded: list[tuple[Path, Node, Inventory | AgentConfig | CollectorConfig]],
) -> dict[Path, tuple[Problem, ...]]:
    """Return the warnings of each inventory, given itself or named by a collector file.

    An inventory is warned of once: under its own name when it is given too, else under the
    first collector file that names it.
    """
    warnings: dict[Path, tuple[Problem, ...]] = {}
    seen = {path.resolve() for path, _, config in loaded if isinstance(config, Inventory)}
    for path, root, config in loaded:
        if isinstance(config, Inventory):
            warnings[path] = tuple(link_warnings(config, root))
        elif isinstance(config, CollectorConfig) and config.inventory.source.resolve() not in seen:
            seen.add(config.inventory.source.resolve())
            try:
                inventory_root = read_tree(config.inventory.source)
            except ConfigError:  # changed since it loaded a moment ago: the next check says so
                continue
            warnings[path] = tuple(link_warnings(config.inventory, inventory_root))
    return warnings


def _cross_check(
    loaded: list[tuple[Path, Node, Inventory | AgentConfig | CollectorConfig]],
) -> dict[Path, list[Problem]]:
    """Check agent files against the inventories and collector files given with them."""
    inventories = [c for _, _, c in loaded if isinstance(c, Inventory)]
    collectors = [c for _, _, c in loaded if isinstance(c, CollectorConfig)]
    inventories += [c.inventory for c in collectors]
    problems: dict[Path, list[Problem]] = {}
    for path, root, config in loaded:
        if not isinstance(config, AgentConfig):
            continue
        fields = root.value if isinstance(root.value, dict) else {}
        site_node = fields.get("site", root)
        id_node = fields.get("id", root)
        for inventory in inventories:
            if not any(site.id == config.site for site in inventory.sites):
                problems.setdefault(path, []).append(
                    Problem(
                        str(path),
                        site_node.line,
                        "site",
                        f"no site {config.site!r} in {inventory.source}",
                    )
                )
        for collector in collectors:
            known = {agent.id: agent.site for agent in collector.agents}
            if config.id not in known:
                message = f"agent {config.id!r} is not listed under agents in {collector.source}"
                problems.setdefault(path, []).append(
                    Problem(str(path), id_node.line, "id", message)
                )
            elif known[config.id] != config.site:
                message = (
                    f"{collector.source} lists agent {config.id!r} for site "
                    f"{known[config.id]!r}, not {config.site!r}"
                )
                problems.setdefault(path, []).append(
                    Problem(str(path), site_node.line, "site", message)
                )
    return problems
