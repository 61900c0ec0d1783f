"""Fixtures shared by the test suite: the lab municipality, and the rule for skipping it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import Lab, can_build, sweep_stale

EXAMPLE_INVENTORY = Path(__file__).resolve().parents[1] / "config" / "inventory.yaml"


def require_lab() -> None:
    """Skip when this machine cannot build the lab; under CI, fail instead."""
    problem = can_build()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must run the lab tests")
        pytest.skip(problem)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """The example municipality, built once per test module and always torn down."""
    require_lab()
    sweep_stale()  # a lab left by a killed run would hold our addresses
    built = Lab(EXAMPLE_INVENTORY)
    built.up()
    try:
        yield built
    finally:
        built.down()


@pytest.fixture
def whole_lab(lab: Lab) -> Iterator[Lab]:
    """The lab, with every cut link and removed device restored after the test."""
    try:
        yield lab
    finally:
        lab.restore_all()
