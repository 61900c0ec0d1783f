"""Every result a real probe returns in these tests must pass the collector's gate.

The collector checks each kind's `value` against the shape in `probes/values.py`; if a probe
produced something that shape refuses, its agent's batches would be refused for ever. So every
probe these suites run against real peers (snmpsim, sipp, loopback servers, this host) is
wrapped: its result goes through strict JSON and `ProbeResult.from_json` and must come back
equal.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from probes import host, http, icmp, path, sip, snmp, tcp
from probes.result import ProbeResult

PROBE_MODULES = (host, http, icmp, path, sip, snmp, tcp)
CHECKED: list[ProbeResult] = []  # every result checked so far, for the tests that count them


def _refuse(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def check_result(result: ProbeResult) -> ProbeResult:
    """Return `result` after proving it survives the wire exactly."""
    text = json.dumps(result.to_json(), allow_nan=False)
    back = ProbeResult.from_json(json.loads(text, parse_constant=_refuse))
    assert back == result, f"{result} came back as {back}"
    CHECKED.append(result)
    return result


@pytest.fixture(autouse=True)
def _results_pass_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    for module, name in (*((m, "probe") for m in PROBE_MODULES), (snmp, "interface_probe")):
        real = getattr(module, name)

        async def checked(*args: Any, _real: Any = real, **kwargs: Any) -> ProbeResult:
            return check_result(await _real(*args, **kwargs))

        monkeypatch.setattr(module, name, checked)
