"""The collector file's `database:`: a SQLite path, a postgresql:// URL, or a mapping with the
URL, its password file and libpq's TLS options. Never a password in the YAML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collector.store.database import StoreError, conninfo
from sitewatch.config import ConfigError, load_collector_config
from sitewatch.config.model import DatabaseSpec
from tests.unit.test_config import INVENTORY, collector_text, write

URL = "postgresql://sitewatch@db.example.org:5432/sitewatch"


def collector_with(tmp_path: Path, database: str) -> Path:
    """Write an inventory and a collector file whose `database:` line is `database`."""
    write(tmp_path, INVENTORY)
    text = collector_text().replace("database: collector.db\n", f"database: {database}\n")
    return write(tmp_path, text, "collector.yaml")


def spec_of(tmp_path: Path, database: str) -> DatabaseSpec:
    return load_collector_config(collector_with(tmp_path, database)).database_spec


def problems(tmp_path: Path, database: str) -> list[str]:
    path = collector_with(tmp_path, database)
    with pytest.raises(ConfigError) as caught:
        load_collector_config(path)
    return [str(problem) for problem in caught.value.problems]


def test_a_relative_sqlite_path_is_taken_from_the_config_file_s_folder(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, "data/collector.db")
    assert spec == DatabaseSpec(path=tmp_path / "data" / "collector.db")
    assert spec.dialect == "sqlite"


def test_a_postgresql_url_alone(tmp_path: Path) -> None:
    config = load_collector_config(collector_with(tmp_path, URL))
    assert config.database_spec == DatabaseSpec(url=URL)
    assert config.database_spec.dialect == "postgresql"
    assert config.database == URL


def test_the_mapping_resolves_its_files_relative_to_the_config_file(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path,
        f"{{url: '{URL}', password_file: secrets/db.password, sslmode: verify-full, "
        "sslrootcert: /etc/ssl/db-ca.pem, sslcert: tls/client.crt, sslkey: tls/client.key}",
    )
    assert spec == DatabaseSpec(
        url=URL,
        password_file=tmp_path / "secrets" / "db.password",
        tls=(
            ("sslmode", "verify-full"),
            ("sslrootcert", "/etc/ssl/db-ca.pem"),
            ("sslcert", str(tmp_path / "tls" / "client.crt")),
            ("sslkey", str(tmp_path / "tls" / "client.key")),
        ),
    )


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("postgresql://sitewatch:hunter2@db:5432/sitewatch",
         "2: database: the URL carries a password; put it in password_file"),
        ("{url: 'postgresql://sitewatch:hunter2@db/sitewatch'}",
         "2: database.url: the URL carries a password; put it in password_file"),
        ("mysql://db/sitewatch",
         "2: database: 'mysql://db/sitewatch': give a file path for SQLite or a postgresql:// URL"),
        (f"{{url: '{URL}', password: hunter2}}", "2: database.password: unknown key"),
        (f"{{url: '{URL}', sslmode: strict}}",
         "2: database.sslmode: 'strict' is not a libpq sslmode; one of disable, allow, prefer, "
         "require, verify-ca, verify-full"),
        ("{password_file: db.password}", "2: database: missing required key 'url'"),
        (f"{{url: '{URL}', password_file: ''}}", "2: database.password_file: must not be empty"),
        ("''", "2: database: must not be empty"),
        ("'postgresql://post%gres@127.0.0.1/x'",
         "2: database: not a valid postgresql:// URL (invalid percent-encoded token"),
        (f"'{URL}?foo=bar'",
         '2: database: not a valid postgresql:// URL (invalid URI query parameter: "foo")'),
        ("{url: 'postgresql://db/x?sslmode=strict&foo=1'}",
         "2: database.url: not a valid postgresql:// URL (invalid URI query parameter"),
    ],
)  # fmt: skip
def test_each_mistake_is_named_with_its_file_line_and_key(
    tmp_path: Path, database: str, expected: str
) -> None:
    found = problems(tmp_path, database)
    path = tmp_path / "collector.yaml"
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:{expected}"), found


def test_a_password_in_the_url_is_never_echoed(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, "postgresql://sitewatch:hunter2@db:5432/sitewatch")
    assert "hunter2" not in found


def test_the_example_postgres_config_is_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "config"
    config = load_collector_config(root / "collector-postgres.yaml")
    spec = config.database_spec
    assert spec.dialect == "postgresql"
    assert spec.password_file == Path("/etc/sitewatch/database.password")
    assert dict(spec.tls)["sslmode"] == "verify-full"


# URLs libpq cannot parse: check-config used to pass them and the collector died on them.
UNPARSABLE = ["'postgresql://post%gres@127.0.0.1/x'", f"'{URL}?foo=bar'"]


@pytest.mark.parametrize("database", UNPARSABLE)
@pytest.mark.parametrize("command", ["check-config", "collector"])
def test_a_url_libpq_cannot_parse_stops_check_config_and_the_collector_in_one_line(
    tmp_path: Path, database: str, command: str
) -> None:
    path = collector_with(tmp_path, database)
    args = [str(path)] if command == "check-config" else ["--config", str(path)]

    result = subprocess.run(
        [sys.executable, "-m", "sitewatch.cli", command, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 1
    (line,) = (result.stdout + result.stderr).splitlines()  # check-config reports on stdout
    assert line.startswith(f"{path}:2: database: not a valid postgresql:// URL ("), line


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://post%gres@127.0.0.1/x", "invalid percent-encoded token"),
        (f"{URL}?foo=bar", 'invalid URI query parameter: "foo"'),
    ],
)
def test_the_store_says_a_url_libpq_cannot_parse_is_not_valid(url: str, expected: str) -> None:
    """The store's own check, for a spec that did not come through the config file."""
    with pytest.raises(StoreError, match="not a valid database URL") as caught:
        conninfo(DatabaseSpec(url=url))
    assert expected in str(caught.value)
