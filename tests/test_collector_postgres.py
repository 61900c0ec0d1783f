"""The collector and the report as a user runs them on PostgreSQL: real `sitewatch` processes,
the session's real PostgreSQL server (tests/pg.py), the password from a password file."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from collector.store import Store
from tests.deploy import Deployment, deploy, free_port
from tests.pg import PostgresServer
from tests.test_restart import inventory

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    running = deploy(tmp_path, inventory(tmp_path), ["alpha"], f"127.0.0.1:{free_port()}")
    try:
        yield running
    finally:
        running.stop_all()


def use_database(deployment: Deployment, database: str) -> None:
    """Point the deployment's collector file at `database` (a URL or a YAML mapping)."""
    config = deployment.collector_config
    text = config.read_text()
    config.write_text(
        re.sub(r"^database: .*$", f"database: {database}", text, count=1, flags=re.MULTILINE)
    )


@pytest.fixture
def password_url(postgres_server: PostgresServer, postgres_url: str) -> str:
    """The test's database as the role that logs in with a password, allowed to create tables."""
    name = postgres_url.rsplit("/", 1)[1]
    with postgres_server.connect(name) as conn:
        conn.execute(f"GRANT ALL ON SCHEMA public TO {postgres_server.password_role}")
    return postgres_server.url(name, user=postgres_server.password_role)


def test_the_collector_starts_on_postgresql_with_a_password_file(
    deployment: Deployment, postgres_server: PostgresServer, password_url: str
) -> None:
    password = deployment.folder / "db.password"
    password.write_text(postgres_server.password + "\n")
    password.chmod(0o600)
    # A relative password_file: taken from the collector file's folder.
    use_database(deployment, f"{{url: '{password_url}', password_file: db.password}}")

    deployment.start_collector()  # waits for /healthz

    assert deployment.healthy()
    with psycopg.connect(postgres_server.url(password_url.rsplit("/", 1)[1])) as conn:
        row = conn.execute("SELECT version FROM sitewatch_schema").fetchone()
    assert row is not None
    assert row[0] >= 1  # migrated by the collector as it started


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("{url: 'URL', password_file: wrong.password}", "password authentication failed"),
        ("{url: 'URL', password_file: missing.password}",
         "cannot read the database password file"),
    ],
)  # fmt: skip
def test_a_refused_login_exits_1_with_one_clear_line(
    deployment: Deployment, password_url: str, database: str, expected: str
) -> None:
    (deployment.folder / "wrong.password").write_text("not-the-password\n")
    use_database(deployment, database.replace("URL", password_url))

    command = ["collector", "--config", str(deployment.collector_config)]
    process = deployment._start("collector", command)  # start_collector would wait for /healthz
    status = process.wait(timeout=60)

    log = deployment.log("collector")
    assert status == 1, log
    assert expected in log
    assert "Traceback" not in log
    assert len([line for line in log.splitlines() if "sitewatch collector:" in line]) == 1


def test_a_role_that_may_not_create_the_schema_exits_1(
    deployment: Deployment, postgres_server: PostgresServer, postgres_url: str
) -> None:
    """Logged in, but without CREATE on the schema (PostgreSQL 15's default for non-owners)."""
    name = postgres_url.rsplit("/", 1)[1]
    url = postgres_server.url(name, user=postgres_server.password_role)
    (deployment.folder / "db.password").write_text(postgres_server.password + "\n")
    use_database(deployment, f"{{url: '{url}', password_file: db.password}}")

    result = subprocess.run(
        [sys.executable, "-m", "sitewatch.cli", "collector", "--config",
         str(deployment.collector_config)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip

    assert result.returncode == 1
    assert f"{url}: cannot set up the schema: permission denied for schema public" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_an_unreachable_server_exits_1(deployment: Deployment) -> None:
    use_database(deployment, f"postgresql://sitewatch@127.0.0.1:{free_port()}/sitewatch")

    result = subprocess.run(
        [sys.executable, "-m", "sitewatch.cli", "collector", "--config",
         str(deployment.collector_config)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip

    assert result.returncode == 1
    assert "cannot connect" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_sla_reads_a_postgresql_database(deployment: Deployment, postgres_url: str) -> None:
    Store(postgres_url).close()  # a collector's database, migrated
    use_database(deployment, postgres_url)

    result = subprocess.run(
        [sys.executable, "-m", "sitewatch.cli", "report", "sla", "--config",
         str(deployment.collector_config), "--from", "2027-01-01", "--to", "2027-01-31",
         "--format", "json"],
        capture_output=True, text=True, check=False, timeout=60, cwd=ROOT,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert '"sites"' in result.stdout
