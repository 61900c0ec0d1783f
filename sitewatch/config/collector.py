"""Build and check the collector's file, and the inventory it names."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from sitewatch.config.agent import check_url, relative_path
from sitewatch.config.errors import ConfigError, Problem
from sitewatch.config.model import (
    POSTGRES_SCHEMES,
    ROLES,
    SSL_MODES,
    TLS_OPTIONS,
    AgentCredential,
    ApiToken,
    CollectorConfig,
    DatabaseSpec,
    EmailNotifier,
    Inventory,
    IPNetwork,
    Notifier,
    TlsFiles,
    User,
    WebhookNotifier,
)
from sitewatch.config.reader import Reader, suggestion
from sitewatch.config.yamltree import Node
from sitewatch.passwords import is_password_hash

COLLECTOR_KEYS = (
    "listen",
    "tls",
    "database",
    "inventory",
    "agents",
    "api_tokens",
    "users",
    "notify",
    "trusted_proxies",
)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")

InventoryLoader = Callable[[Path], Inventory]
T = TypeVar("T")


def build_collector_config(
    root: Node, file: Path, load_inventory: InventoryLoader
) -> CollectorConfig:
    """Return the collector configuration in `root` with its inventory loaded and checked.

    Problems in the inventory are reported against the inventory's own file; problems of
    both files come out together in one ConfigError.
    """
    r = Reader(str(file))
    fields = r.mapping(root, COLLECTOR_KEYS, required=("listen", "database", "inventory"))
    host, port = _listen(r, fields["listen"]) if "listen" in fields else ("", 0)
    database = _database(r, fields["database"], file) if "database" in fields else DatabaseSpec()
    inventory: Inventory | None = None
    inventory_problems: tuple[Problem, ...] = ()
    if "inventory" in fields and r.string(fields["inventory"]):
        path = relative_path(r, fields["inventory"], file)
        try:
            inventory = load_inventory(path)
        except ConfigError as err:
            inventory_problems = err.problems
    agents = _unique(r, fields, "agents", "id", lambda node: _agent(r, node, inventory))
    api_tokens = _unique(r, fields, "api_tokens", "name", lambda node: _api_token(r, node))
    users = _unique(r, fields, "users", "name", lambda node: _user(r, node))
    _check_distinct_tokens(r, fields)
    notify = (
        tuple(_notifier(r, node) for node in r.items(fields["notify"]) if "notify" in fields)
        if "notify" in fields
        else ()
    )
    proxies = (
        tuple(_network(r, node) for node in r.items(fields["trusted_proxies"]))
        if "trusted_proxies" in fields
        else ()
    )
    if r.problems or inventory_problems or inventory is None:
        raise ConfigError([*r.problems, *inventory_problems])
    return CollectorConfig(
        source=file,
        listen_host=host,
        listen_port=port,
        tls=_tls(r, fields["tls"], file) if "tls" in fields else None,
        database=str(database),
        database_spec=database,
        inventory=inventory,
        agents=agents,
        api_tokens=api_tokens,
        users=users,
        notify=notify,
        trusted_proxies=tuple(net for net in proxies if net is not None),
    )


def _listen(r: Reader, node: Node) -> tuple[str, int]:
    text = r.string(node)
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        r.problem(node, f"{text!r} is not HOST:PORT, like 0.0.0.0:8080 or [::]:8080")
        return "", 0
    return host, int(port_text)


# The widest network a trusted proxy entry may name: a proxy is a few machines, and a wider
# range lets anyone inside it write the X-Forwarded-For the login limit believes.
WIDEST_PROXY_PREFIX = {4: 8, 6: 32}


def _network(r: Reader, node: Node) -> IPNetwork | None:
    """Return one trusted proxy's CIDR (a bare address is a /32 or /128 of its own).

    An empty entry is an error (Reader.string says so), and so is a network wider than
    WIDEST_PROXY_PREFIX: 0.0.0.0/0 would believe everyone's X-Forwarded-For.
    """
    text = r.string(node)
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as err:
        if text:
            r.problem(node, f"{text!r} is not an address or CIDR like 127.0.0.1/32 ({err})")
        return None
    widest = WIDEST_PROXY_PREFIX[network.version]
    if network.prefixlen == 0:
        r.problem(
            node,
            f"{text!r} is every address: it would believe anyone's X-Forwarded-For, so anyone "
            "could pose as any client; list only your reverse proxy's own address",
        )
        return None
    if network.prefixlen < widest:
        r.problem(
            node,
            f"{text!r} is wider than /{widest}: everyone in it could pose as any client through "
            "X-Forwarded-For; list only your reverse proxy's own address",
        )
        return None
    return network


def _tls(r: Reader, node: Node, file: Path) -> TlsFiles:
    fields = r.mapping(node, ("cert", "key"), required=("cert", "key"))
    return TlsFiles(
        cert=relative_path(r, fields["cert"], file) if "cert" in fields else Path(),
        key=relative_path(r, fields["key"], file) if "key" in fields else Path(),
    )


DATABASE_KEYS = ("url", "password_file", *TLS_OPTIONS)
_TLS_FILES = ("sslrootcert", "sslcert", "sslkey", "sslcrl")


def _database(r: Reader, node: Node, file: Path) -> DatabaseSpec:
    """Return the database: a SQLite path or a postgresql:// URL, or a mapping with the URL,
    its password file and libpq's TLS options. Never a password in the YAML.

    Relative paths (the SQLite file, the password file, the TLS files) are taken from the
    folder of the collector's file, as every other path in it.
    """
    if not isinstance(node.value, dict):
        text = r.string(node)
        if "://" not in text:
            return DatabaseSpec(path=relative_path(r, node, file)) if text else DatabaseSpec()
        return DatabaseSpec(url=_postgres_url(r, node, text))
    fields = r.mapping(node, DATABASE_KEYS, required=("url",))
    url = _postgres_url(r, fields["url"], r.string(fields["url"])) if "url" in fields else ""
    password_file = None
    if "password_file" in fields:
        password_file = relative_path(r, fields["password_file"], file)
    tls: list[tuple[str, str]] = []
    for key in TLS_OPTIONS:
        if key not in fields:
            continue
        if key == "sslmode":
            mode = r.string(fields[key])
            if mode and mode not in SSL_MODES:
                r.problem(
                    fields[key],
                    f"{mode!r} is not a libpq sslmode; one of {', '.join(SSL_MODES)}",
                )
            tls.append((key, mode))
        elif key in _TLS_FILES:
            tls.append((key, str(relative_path(r, fields[key], file))))
    return DatabaseSpec(url=url or None, password_file=password_file, tls=tuple(tls))


def _postgres_url(r: Reader, node: Node, text: str) -> str:
    """Return a postgresql:// URL as given; refuse another scheme and a password in it."""
    if not text.startswith(POSTGRES_SCHEMES):
        r.problem(node, f"{text!r}: give a file path for SQLite or a postgresql:// URL")
        return text
    try:
        password = urlsplit(text).password
    except ValueError as err:
        r.problem(node, f"not a valid postgresql:// URL ({err})")
        return text
    if password is not None:
        # Never echo the URL: the password would land in the logs.
        r.problem(
            node,
            "the URL carries a password; put it in password_file (database: {url: ..., "
            "password_file: FILE}), or in PGPASSWORD or ~/.pgpass",
        )
        return text
    # libpq's own parser, so a URL check-config passes is one the collector can connect with
    # (a stray %, an option libpq does not know).
    from psycopg import ProgrammingError  # noqa: PLC0415 -- a SQLite collector never loads it
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415 -- as above

    try:
        conninfo_to_dict(text)
    except ProgrammingError as err:
        r.problem(node, f"not a valid postgresql:// URL ({str(err).strip().splitlines()[0]})")
    return text


def _unique(
    r: Reader,
    fields: dict[str, Node],
    key: str,
    name_key: str,
    build: Callable[[Node], T],
) -> tuple[T, ...]:
    """Build each item of a list and insist that `name_key` is unique among them."""
    if key not in fields:
        return ()
    seen: dict[str, int] = {}
    built: list[T] = []
    for item in r.items(fields[key]):
        name_node = item.value.get(name_key) if isinstance(item.value, dict) else None
        if name_node is not None and isinstance(name_node.value, str):
            if name_node.value in seen:
                r.problem(
                    name_node,
                    f"{name_node.value!r} is already defined on line {seen[name_node.value]}",
                )
            seen.setdefault(name_node.value, name_node.line)
        built.append(build(item))
    return tuple(built)


def _sha256(r: Reader, node: Node) -> str:
    text = r.string(node).lower()
    if text and not _SHA256.fullmatch(text):
        r.problem(
            node,
            "expected 64 hex digits: the SHA-256 of the token, as printed by "
            "`printf %s TOKEN | sha256sum`",
        )
    return text


def _role(r: Reader, fields: dict[str, Node]) -> Literal["viewer", "operator", "admin"]:
    return r.choice(fields["role"], ROLES) if "role" in fields else "viewer"


def _agent(r: Reader, node: Node, inventory: Inventory | None) -> AgentCredential:
    fields = r.mapping(
        node, ("id", "site", "token_sha256"), required=("id", "site", "token_sha256")
    )
    site = r.identifier(fields["site"]) if "site" in fields else ""
    if inventory is not None and site:
        site_ids = [s.id for s in inventory.sites]
        if site not in site_ids:
            r.problem(
                fields["site"], f"no site {site!r} in the inventory{suggestion(site, site_ids)}"
            )
        elif not inventory.site(site).monitored:
            r.problem(fields["site"], f"site {site!r} is marked monitored: false")
    return AgentCredential(
        id=r.identifier(fields["id"]) if "id" in fields else "",
        site=site,
        token_sha256=_sha256(r, fields["token_sha256"]) if "token_sha256" in fields else "",
    )


def _api_token(r: Reader, node: Node) -> ApiToken:
    fields = r.mapping(node, ("name", "role", "token_sha256"), required=("name", "token_sha256"))
    return ApiToken(
        name=r.string(fields["name"]) if "name" in fields else "",
        role=_role(r, fields),
        token_sha256=_sha256(r, fields["token_sha256"]) if "token_sha256" in fields else "",
    )


def _user(r: Reader, node: Node) -> User:
    fields = r.mapping(node, ("name", "role", "password_hash"), required=("name", "password_hash"))
    password_hash = r.string(fields["password_hash"]) if "password_hash" in fields else ""
    if password_hash and not is_password_hash(password_hash):
        r.problem(fields["password_hash"], "not a hash made by `sitewatch hash-password`")
    return User(
        name=r.string(fields["name"]) if "name" in fields else "",
        role=_role(r, fields),
        password_hash=password_hash,
    )


def _check_distinct_tokens(r: Reader, fields: dict[str, Node]) -> None:
    """Refuse one token hash given to two holders: the collector could not tell them apart."""
    seen: dict[str, int] = {}
    for key in ("agents", "api_tokens"):
        for item in r.items(fields[key]) if key in fields else []:
            token = item.value.get("token_sha256") if isinstance(item.value, dict) else None
            if token is None or not isinstance(token.value, str):
                continue
            digest = token.value.lower()
            if digest in seen:
                r.problem(token, f"the same token is already given on line {seen[digest]}")
            seen.setdefault(digest, token.line)


def _notifier(r: Reader, node: Node) -> Notifier:
    kind_node = node.value.get("kind") if isinstance(node.value, dict) else None
    kind = r.choice(kind_node, ("webhook", "email")) if kind_node else None
    if kind is None:
        r.mapping(node, ("kind",), required=("kind",))
        return WebhookNotifier(url="", format="generic", routing_key=None)
    if kind == "webhook":
        fields = r.mapping(node, ("kind", "url", "format", "routing_key"), required=("url",))
        fmt: Literal["generic", "pagerduty"] = "generic"
        if "format" in fields:
            fmt = r.choice(fields["format"], ("generic", "pagerduty"))
        routing_key = r.string(fields["routing_key"]) if "routing_key" in fields else None
        if fmt == "pagerduty" and routing_key is None:
            r.problem(node, "format: pagerduty needs the integration's routing_key")
        return WebhookNotifier(
            url=check_url(r, fields["url"]) if "url" in fields else "",
            format=fmt,
            routing_key=routing_key,
        )
    fields = r.mapping(
        node, ("kind", "smtp", "from", "to", "starttls"), required=("smtp", "from", "to")
    )
    host, port = ("", 25)
    if "smtp" in fields:
        text = r.string(fields["smtp"])
        host, _, port_text = text.partition(":")
        if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
            r.problem(fields["smtp"], f"{text!r} is not HOST or HOST:PORT")
        port = int(port_text) if port_text.isdigit() else 25
    recipients = tuple(_email(r, item) for item in r.items(fields["to"])) if "to" in fields else ()
    if "to" in fields and not recipients and isinstance(fields["to"].value, list):
        r.problem(fields["to"], "needs at least one address")
    return EmailNotifier(
        smtp_host=host,
        smtp_port=port,
        sender=_email(r, fields["from"]) if "from" in fields else "",
        recipients=recipients,
        starttls=r.boolean(fields["starttls"]) if "starttls" in fields else False,
    )


def _email(r: Reader, node: Node) -> str:
    text = r.string(node)
    if text and not _EMAIL.fullmatch(text):
        r.problem(node, f"{text!r} is not an email address")
    return text
