"""Private files: made with exactly their mode whatever the umask, on a real file system."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitewatch.private_files import create_private, replace_private


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Run with umask 000 (and, at creation, with 077 taken off nothing)."""
    before = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.usefixtures("permissive_umask")
def test_a_new_file_gets_exactly_its_mode_and_an_existing_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    fresh, kept = tmp_path / "fresh.db", tmp_path / "kept.db"
    kept.write_text("x")
    kept.chmod(0o644)  # as its administrator left it
    create_private(fresh, 0o640)
    create_private(kept, 0o600)
    assert (mode(fresh), fresh.read_text()) == (0o640, "")
    assert (mode(kept), kept.read_text()) == (0o644, "x")


def test_a_strict_umask_takes_nothing_from_the_group_mode(tmp_path: Path) -> None:
    before = os.umask(0o077)
    try:
        create_private(tmp_path / "collector.db", 0o640)
    finally:
        os.umask(before)
    assert mode(tmp_path / "collector.db") == 0o640


@pytest.mark.usefixtures("permissive_umask")
def test_a_replaced_file_is_private_even_over_a_crashs_leftover_scratch(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("old")
    scratch = tmp_path / "plan.json.tmp"
    scratch.write_text("half written")
    scratch.chmod(0o666)  # left by a crash, under some other umask
    replace_private(path, "new", 0o600)
    assert (path.read_text(), mode(path)) == ("new", 0o600)
    assert not scratch.exists()
