"""The probe registry is explicit and refuses a kind registered twice."""

from __future__ import annotations

import pytest

from probes import PROBES, register
from probes.icmp import probe as icmp_probe


def test_every_kind_is_registered_once() -> None:
    assert {"icmp", "tcp", "http", "sip", "host"} <= set(PROBES)
    assert PROBES["icmp"] is icmp_probe


def test_registering_a_kind_twice_raises() -> None:
    with pytest.raises(ValueError, match="probe kind 'icmp' is registered twice"):
        register("icmp", icmp_probe)
