"""The collector file's `database:`: a SQLite path, a postgresql:// URL, or a mapping with the
URL, its password file and libpq's TLS options. Never a password in the YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

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
