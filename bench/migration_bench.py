"""Schema migration 6 (results keyed by outbox) on a large database: time and files left.

Run with `.venv/bin/python -m bench.migration_bench [--rows 1000000]` (no root needed). Builds a
collector database at schema version 5 in the temporary folder ($TMPDIR), in WAL mode as a
collector leaves it, with `--rows` results spread over 100 agents and 2,000 targets, then opens
it with `collector.store.Store`, which migrates it. Prints the time the open took and the sizes
of the database and of its -wal file afterwards: what an upgrade costs a collector at start-up
and what it leaves on disk.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import tempfile
import time
from pathlib import Path

from collector.store import MIGRATIONS, Store

BATCH = 50_000


def build_v5(path: Path, rows: int) -> None:
    """Write a version-5 database holding `rows` results, as a collector of that version did."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")  # building the fixture, not measuring it
        for number, script in enumerate(MIGRATIONS[:5], start=1):
            db.executescript(script)
            db.execute(f"PRAGMA user_version = {number}")
        start = time.time() - 3_600
        value = '{"rtt_min_ms":3.9,"rtt_avg_ms":4.2,"rtt_max_ms":4.8,"sent":3,"received":3}'
        for first in range(0, rows, BATCH):
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    (
                        f"agent-{n % 100:03d}",
                        n // 100 + 1,
                        f"target-{n % 2_000:04d}",
                        "icmp",
                        start + n * 0.003,
                        1,
                        4.2,
                        0.0,
                        value,
                        None,
                        "",
                        start + n * 0.003 + 1,
                    )
                    for n in range(first, min(first + BATCH, rows))
                ),
            )
            db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def size(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MiB" if path.exists() else "absent"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "collector.db"
        built = time.perf_counter()
        build_v5(path, args.rows)
        print(f"built a v5 database of {args.rows:,} results in "
              f"{time.perf_counter() - built:.1f} s: {size(path)}")  # fmt: skip
        began = time.perf_counter()
        store = Store(path)
        took = time.perf_counter() - began
        wal = Path(f"{path}-wal")
        print(f"migrated on open in {took:.1f} s; database {size(path)}, -wal {size(wal)}")
        store.close()
        print(f"after close: database {size(path)}, -wal {size(wal)}")


if __name__ == "__main__":
    main()
