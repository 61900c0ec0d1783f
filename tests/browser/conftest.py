"""Fixtures of the dashboard's tests: a small collector with two logins, and a logged-in client.

The inventory has a site whose name is a script tag, to prove that every page escapes it. Its
addresses are on loopback: a collector started from it pings only this machine.
Passwords are hashed once per session: scrypt is slow on purpose.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from collector.service import Collector
from sitewatch.config.files import load_collector_config
from sitewatch.passwords import hash_password
from tests.apps import served

EVIL_NAME = "<script>alert('sitewatch')</script>"
PASSWORDS = {"desk": "desk-password", "screen": "screen-password"}
INVENTORY = f"""\
organisation: Test Municipality
timezone: Africa/Johannesburg
thresholds: {{interval: 1s, timeout: 300ms, fail_after: 2, recover_after: 1}}
sites:
  - id: alpha
    name: Alpha Offices
    users: 12
    links:
      - {{id: alpha-mpls, kind: mpls, role: primary, to: hub, probe: [127.0.0.1],
         edge: 127.0.0.1}}
    devices:
      - {{id: alpha-prn, kind: printer, address: 127.0.3.21, probes: [icmp, snmp]}}
      - {{id: alpha-phone, kind: phone, address: 127.0.3.31, probes: [icmp, sip]}}
  - id: evil
    name: "{EVIL_NAME}"
    users: 3
    links:
      - {{id: evil-wireless, kind: wireless, role: primary, to: alpha, probe: [127.0.0.1],
         edge: 127.0.0.2}}
  - id: pound
    name: Pound
    users: 0
    monitored: false
"""
CSRF = re.compile(r'name="csrf" value="([^"]*)"')


@pytest.fixture(scope="session")
def hashes() -> dict[str, str]:
    return {name: hash_password(password) for name, password in PASSWORDS.items()}


def write_config(folder: Path, hashes: dict[str, str], extra: str = "") -> Path:
    (folder / "inventory.yaml").write_text(INVENTORY)
    path = folder / "collector.yaml"
    path.write_text(
        "listen: 127.0.0.1:8080\n"
        f"database: {folder / 'collector.db'}\n"
        "inventory: inventory.yaml\n"
        "users:\n"
        f"  - {{name: desk, role: operator, password_hash: '{hashes['desk']}'}}\n"
        f"  - {{name: screen, role: viewer, password_hash: '{hashes['screen']}'}}\n" + extra
    )
    return path


@dataclass
class Dashboard:
    """A test client of the collector's app, and the collector behind it."""

    client: TestClient[Any, Any]
    collector: Collector

    async def login(self, name: str, password: str | None = None) -> int:
        """Log in through the form; return the status of the answer (303 on success)."""
        page = await self.client.get("/login")
        token = csrf_of(await page.text())
        response = await self.client.post(
            "/login",
            data={"csrf": token, "name": name, "password": password or PASSWORDS[name]},
            allow_redirects=False,
        )
        return response.status

    async def csrf(self, path: str = "/") -> str:
        """Return the session's CSRF token, as a page carries it."""
        response = await self.client.get(path)
        return csrf_of(await response.text())

    async def page(self, path: str) -> tuple[int, str]:
        response = await self.client.get(path, allow_redirects=False)
        return response.status, await response.text()


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html
    return found[1]


@pytest.fixture
async def dashboard(tmp_path: Path, hashes: dict[str, str]) -> AsyncIterator[Dashboard]:
    config = load_collector_config(write_config(tmp_path, hashes))
    async with served(config, tmp_path / "collector.db") as (client, collector):
        yield Dashboard(client, collector)
