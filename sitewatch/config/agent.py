"""Build and check an agent's file: its id, its site and how to reach the collector."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from sitewatch.config.errors import ConfigError
from sitewatch.config.model import AgentConfig
from sitewatch.config.reader import Reader
from sitewatch.config.yamltree import Node

AGENT_KEYS = ("id", "site", "collector", "ca_file", "token_file", "state_dir")


def build_agent_config(root: Node, file: Path) -> AgentConfig:
    """Return the agent configuration in `root`, or raise ConfigError naming every problem."""
    r = Reader(str(file))
    fields = r.mapping(root, AGENT_KEYS, required=("id", "site", "collector", "token_file"))
    collectors = collector_urls(r, fields["collector"]) if "collector" in fields else ()
    ca_file = relative_path(r, fields["ca_file"], file) if "ca_file" in fields else None
    if ca_file is not None and not any(url.startswith("https://") for url in collectors):
        r.problem(fields["ca_file"], "ca_file applies only to an https:// collector")
    config = AgentConfig(
        source=file,
        id=r.identifier(fields["id"]) if "id" in fields else "",
        site=r.identifier(fields["site"]) if "site" in fields else "",
        collectors=collectors,
        ca_file=ca_file,
        token_file=(
            relative_path(r, fields["token_file"], file) if "token_file" in fields else Path()
        ),
        state_dir=(
            relative_path(r, fields["state_dir"], file)
            if "state_dir" in fields
            else Path("/var/lib/sitewatch")
        ),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return config


def collector_urls(r: Reader, node: Node) -> tuple[str, ...]:
    """Return the collectors' URLs: one URL, or a list of them (several collectors on one
    database), each once, without a trailing slash."""
    nodes = r.items(node) if isinstance(node.value, list) else [node]
    if isinstance(node.value, list) and not nodes:
        r.problem(node, "must name at least one collector")
    urls: list[str] = []
    for item in nodes:
        url = check_url(r, item).rstrip("/")
        if url in urls:
            r.problem(item, f"{url!r} is listed twice")
        elif urls and {_scheme(url), _scheme(urls[0])} == {"http", "https"}:
            # the agent's token would go in clear to one and under TLS to the other
            r.problem(item, f"{url!r} mixes http:// and https:// in one list: use one for all")
        elif url:
            urls.append(url)
    return tuple(urls)


def _scheme(url: str) -> str:
    return urlsplit(url).scheme


def check_url(r: Reader, node: Node) -> str:
    """Return an http:// or https:// URL with a host."""
    url = r.string(node)
    if not url:
        return url
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        r.problem(node, f"{url!r} has an invalid port")
        return url
    if parts.scheme not in ("http", "https") or not parts.hostname:
        r.problem(node, f"{url!r} is not an http:// or https:// URL with a host")
    elif port == 0:
        r.problem(node, f"{url!r} has an invalid port")
    return url


def relative_path(r: Reader, node: Node, file: Path) -> Path:
    """Return a path, relative paths taken from the folder of the file that names them."""
    text = r.string(node)
    return (file.parent / text) if text else Path()
