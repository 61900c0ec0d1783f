"""Fixtures of the collector's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh collector database in the test's own folder, closed afterwards."""
    opened = Store(tmp_path / "collector.db")
    try:
        yield opened
    finally:
        opened.close()
