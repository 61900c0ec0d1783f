"""`sitewatch report sla` as a user runs it: a real process on a real database file."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.store import Store

ROOT = Path(__file__).resolve().parents[2]
SITEWATCH = [sys.executable, "-m", "sitewatch.cli"]
HOUR = 3600.0


def at(moment: str) -> float:
    """Return the Unix time of a Johannesburg wall-clock moment ("2024-03-08 16:00")."""
    return (
        datetime.fromisoformat(moment).replace(tzinfo=ZoneInfo("Africa/Johannesburg")).timestamp()
    )


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SITEWATCH, *args], capture_output=True, text=True, check=False, cwd=ROOT
    )


def write_config(folder: Path, database: str = "c.db") -> Path:
    """Write a collector file naming the example inventory by absolute path."""
    config = folder / "collector.yaml"
    config.write_text(
        "listen: 127.0.0.1:8080\n"
        f"database: {database}\n"
        f"inventory: {ROOT / 'config' / 'inventory.yaml'}\n"
    )
    return config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A collector file and its database: two P1s either side of their due time, one outage."""
    store = Store(tmp_path / "c.db")
    try:
        with store.db.writing() as db:
            rows = [
                # opened Friday 16:00, due Monday 11:30
                ("link:customer-care-mpls", "2024-03-08 16:00", "2024-03-11 11:29", 1),
                ("site:willowvale", "2024-03-15 16:00", "2024-03-18 11:31", 0),
            ]
            for key, opened, resolved, major in rows:
                due = at(opened) + 3 * 86_400 - 4.5 * HOUR  # Monday 11:30
                db.execute(
                    "INSERT INTO incidents (key, priority, status, title, cause, sites, "
                    "affected_users, opened_at, resolved_at, due_at, major) "
                    "VALUES (?, 'P1', 'resolved', ?, ?, ?, 22, ?, ?, ?, ?)",
                    (key, f"{key} down", json.dumps({"kind": key.partition(":")[0]}),
                     json.dumps(["customer-care"]), at(opened), at(resolved), due, major),
                )  # fmt: skip
            db.executemany(
                "INSERT INTO status_log (entity, ts, status) VALUES (?, ?, ?)",
                [
                    ("site:customer-care", at("2024-02-01 00:00"), "up"),
                    ("site:customer-care", at("2024-03-08 16:00"), "down"),
                    ("site:customer-care", at("2024-03-11 11:29"), "up"),
                ],
            )
    finally:
        store.close()
    return write_config(tmp_path)


def test_table_is_the_default(config: Path) -> None:
    result = run("report", "sla", "--config", str(config), "--from", "2024-03-01",
                 "--to", "2024-03-31")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[1] == "Period: 2024-03-01 to 2024-03-31 (Africa/Johannesburg)"
    p1 = next(line for line in lines if line.startswith("P1 "))
    assert p1.split()[4:11] == ["2", "2", "1", "1", "0", "50.00%", "NO"]
    assert any(line.startswith("Customer Care ") and "2d19h29m" in line for line in lines)
    assert max(len(line) for line in lines) <= 100


def test_json_format(config: Path) -> None:
    result = run("report", "sla", "--config", str(config), "--from", "2024-03-08",
                 "--to", "2024-03-11", "--format", "json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["period"]["from"] == "2024-03-07T22:00:00Z"
    assert body["period"]["to"] == "2024-03-11T22:00:00Z"  # --to is inclusive
    p1 = body["priorities"][0]
    assert (p1["opened"], p1["within_target"], p1["achieved"], p1["target_met"]) == (
        1,
        1,
        1.0,
        True,
    )
    assert [m["key"] for m in body["major_incidents"]] == ["link:customer-care-mpls"]


def test_csv_format(config: Path) -> None:
    result = run("report", "sla", "--config", str(config), "--from", "2024-03-01",
                 "--to", "2024-03-31", "--format", "csv")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["section", "subject", "metric", "value"]
    figures = {(s, subject, metric): value for s, subject, metric, value in rows[1:]}
    assert figures["priority", "P1", "breached"] == "1"
    assert figures["site", "customer-care", "down_s"] == str(67 * 3600 + 29 * 60)


def test_relative_database_is_found_beside_the_config(config: Path) -> None:
    """Run from another folder: the path in the file is relative to the file, not to cwd."""
    result = subprocess.run(
        [*SITEWATCH, "report", "sla", "--config", str(config), "--from", "2024-03-01",
         "--to", "2024-03-31", "--format", "json"],
        capture_output=True, text=True, check=False, cwd=config.parent.parent,
        env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["volume"]["opened"] == 2


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2024-02-30", "2024-03-31", "argument --from: '2024-02-30' is not a date YYYY-MM-DD"),
        ("2024-03-01", "31/03/2024", "argument --to: '31/03/2024' is not a date YYYY-MM-DD"),
        ("20240301", "2024-03-31", "argument --from: '20240301' is not a date YYYY-MM-DD"),
        ("2024-04-01", "2024-03-31", "--from 2024-04-01 is after --to 2024-03-31"),
    ],
)
def test_bad_dates_exit_2_with_one_line(config: Path, first: str, last: str, message: str) -> None:
    result = run("report", "sla", "--config", str(config), "--from", first, "--to", last)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"sitewatch report sla: {message} (see sitewatch report sla --help)"
    ]


def test_missing_database_exits_1_and_creates_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, "missing/c.db")
    result = run("report", "sla", "--config", str(config), "--from", "2024-03-01",
                 "--to", "2024-03-31")  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"sitewatch report sla: {tmp_path / 'missing' / 'c.db'}: no such database "
        "(has the collector run with this file?)"
    ]
    assert not (tmp_path / "missing").exists()


def test_a_file_that_is_not_a_database_exits_1(tmp_path: Path) -> None:
    (tmp_path / "c.db").write_text("not SQLite at all, but long enough to be read as a header\n")
    config = write_config(tmp_path)
    result = run("report", "sla", "--config", str(config), "--from", "2024-03-01",
                 "--to", "2024-03-31")  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"sitewatch report sla: {tmp_path / 'c.db'}: ")
    assert len(result.stderr.splitlines()) == 1


def test_bad_config_file_exits_1(tmp_path: Path) -> None:
    result = run("report", "sla", "--config", str(tmp_path / "nope.yaml"), "--from",
                 "2024-03-01", "--to", "2024-03-31")  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "nope.yaml" in result.stderr
    assert "cannot read" in result.stderr


def test_help_names_the_report() -> None:
    top = run("--help")
    assert "report" in top.stdout
    result = run("report", "sla", "--help")
    assert result.returncode == 0
    assert "--from DATE" in result.stdout
    assert "inclusive" in result.stdout
    assert "{table,csv,json}" in result.stdout
