"""The collector's storage layer: one module per table family, SQLite or PostgreSQL.

`Store` is what the rest of the collector holds; the table modules below it are each the only
writer of their tables (see docs in each).
"""

from collector.store.results import (
    CENTRE,
    DATABASE_MODE,
    DEFAULT_RETENTION,
    INSERT_RESULT,
    LEGACY_OUTBOX,
    MAX_VALUE_DEPTH,
    MIGRATIONS,
    RESULT_COLUMNS,
    RESULTS_REBUILT_BY,
    RESULTS_SCHEMA,
    ROLLUP_SECONDS,
    IngestOutcome,
    Store,
    Stored,
    StoreError,
    result_row,
    stored_reading,
    stored_time,
)

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
    "IngestOutcome",
    "Store",
    "StoreError",
    "Stored",
    "result_row",
    "stored_reading",
    "stored_time",
]
