"""The agent's probe plan: fetched from the collector with an ETag, cached in the state directory.

The cache is what lets a branch office keep probing through a WAN outage, also after a restart:
the agent starts from the cached plan and fetches a newer one when the collector answers.
A plan the agent cannot read is refused whole; the one in force stays.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp

from probes.plan import Plan, PlanFormatError, plan_from_json, plan_to_json
from sitewatch.private_files import replace_private

log = logging.getLogger(__name__)
CACHE_NAME = "plan.json"
CACHE_MODE = 0o600


class PlanUnavailable(Exception):
    """No plan could be fetched (the reason is the message); `status` is the collector's
    HTTP answer, 0 for none (agent.collectors moves on after some)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def load_cached(state_dir: Path) -> Plan | None:
    """Return the cached plan, or None when there is none or it cannot be read."""
    path = state_dir / CACHE_NAME
    try:
        return plan_from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, PlanFormatError) as err:
        log.warning("ignoring the cached plan %s: %s", path, err)
        return None


def save_cached(state_dir: Path, plan: Plan) -> None:
    """Write the plan atomically (write, fsync, rename), so a crash leaves the old or the new.

    The file holds SNMP credentials: it is made for the agent's user only, whatever the umask.
    """
    replace_private(state_dir / CACHE_NAME, json.dumps(plan_to_json(plan)), CACHE_MODE)


async def fetch(
    session: aiohttp.ClientSession, base_url: str, current: Plan | None, timeout: float
) -> Plan | None:
    """Return a newer plan, None when `current` is still the latest, or raise PlanUnavailable."""
    headers = {"If-None-Match": f'"{current.version}"'} if current else {}
    try:
        async with session.get(
            f"{base_url}/api/v1/agent/plan",
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            if response.status == 304:
                return None
            if response.status != 200:
                raise PlanUnavailable(f"the collector answered {response.status}: "
                                      f"{(await response.text())[:200]}",
                                      response.status)  # fmt: skip
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        raise PlanUnavailable(f"cannot fetch the plan: {err or type(err).__name__}") from err
    try:
        return plan_from_json(body)
    except PlanFormatError as err:
        raise PlanUnavailable(
            f"the collector sent a plan this agent cannot read: {err}", 200
        ) from err
