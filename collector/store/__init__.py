"""The collector's storage layer: one module per table family, SQLite or PostgreSQL.

`Store` is what the rest of the collector holds; the table modules below it are each the only
writer of their tables (see docs in each).
"""

from collector.store.database import DATABASE_MODE, DatabaseSpec, DatabaseUnavailable, StoreError
from collector.store.facade import Store
from collector.store.results import (
    CENTRE,
    DEFAULT_RETENTION,
    INSERT_RESULT,
    LEGACY_OUTBOX,
    MAX_VALUE_DEPTH,
    RESULT_COLUMNS,
    ROLLUP_SECONDS,
    IngestOutcome,
    Stored,
    result_row,
    stored_reading,
    stored_time,
)
from collector.store.schema import MIGRATIONS, RESULTS_REBUILT_BY, RESULTS_SCHEMA

__all__ = [
    "CENTRE",
    "DATABASE_MODE",
    "DEFAULT_RETENTION",
    "INSERT_RESULT",
    "LEGACY_OUTBOX",
    "MAX_VALUE_DEPTH",
    "MIGRATIONS",
    "RESULTS_REBUILT_BY",
    "RESULTS_SCHEMA",
    "RESULT_COLUMNS",
    "ROLLUP_SECONDS",
    "DatabaseSpec",
    "DatabaseUnavailable",
    "IngestOutcome",
    "Store",
    "StoreError",
    "Stored",
    "result_row",
    "stored_reading",
    "stored_time",
]
