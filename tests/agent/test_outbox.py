"""The outbox on real files: ordering, overflow, backlog fairness, foreign files and kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.outbox import Entry, Outbox, OutboxError


def records(*numbers: int) -> list[dict[str, Any]]:
    """Return small distinct records, one per number."""
    return [{"n": n, "target": f"10.0.0.{n % 250}", "ok": n % 2 == 0} for n in numbers]


def waiting(box: Outbox) -> list[Entry]:
    """Return every waiting entry."""
    return box.take(box.depth() + 1)


def test_put_take_ack_round_trip(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        assert box.put(records(1, 2)) == [1, 2]
        assert box.put(records(3)) == [3]
        entries = box.take(10)
        assert entries == [
            Entry(1, records(1)[0]),
            Entry(2, records(2)[0]),
            Entry(3, records(3)[0]),
        ]
        assert box.take(10) == entries  # take removes nothing
        box.ack([1, 3, 99])  # 99 was never stored
        assert box.depth() == 1
        assert box.take(10) == [Entry(2, records(2)[0])]
        box.ack([])
        assert box.depth() == 1


def test_empty_put_stores_nothing(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        assert box.put([]) == []
        assert box.put(records(1)) == [1]


def test_seqs_continue_across_reopen_and_full_ack(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        box.put(records(1, 2, 3))
    with Outbox(path) as box:
        assert [entry.seq for entry in box.take(10)] == [1, 2, 3]
        box.ack([1, 2, 3])
        assert box.depth() == 0
        assert box.put(records(4)) == [4]
        box.ack([4])
    with Outbox(path) as box:
        assert box.depth() == 0
        assert box.put(records(5, 6)) == [5, 6]


def test_overflow_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, max_entries=5) as box:
        box.put(records(1, 2, 3))
        assert box.put(records(4, 5, 6, 7)) == [4, 5, 6, 7]
        assert [entry.seq for entry in waiting(box)] == [3, 4, 5, 6, 7]
        assert box.depth() == 5
        assert box.dropped() == 2
    with Outbox(path, max_entries=5) as box:  # the counter is on disk
        assert box.dropped() == 2
        box.ack([3])
        box.put(records(8))  # there was room
        assert box.dropped() == 2
        box.reported_dropped(1)
        assert box.dropped() == 1
        box.reported_dropped(5)  # never below zero
        assert box.dropped() == 0


def test_batch_larger_than_the_outbox_keeps_its_newest(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db", max_entries=3) as box:
        box.put(records(1))
        assert box.put(records(2, 3, 4, 5, 6)) == [2, 3, 4, 5, 6]
        assert waiting(box) == [Entry(seq, records(seq)[0]) for seq in (4, 5, 6)]
        assert box.dropped() == 3


def test_take_with_a_backlog_mixes_oldest_and_newest(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        box.put(records(*range(1, 101)))
        seqs = [entry.seq for entry in box.take(20)]
        assert seqs == [*range(1, 16), *range(96, 101)]  # 15 oldest, 5 newest
        assert [e.seq for e in box.take(20, fresh_share=0.0)] == list(range(1, 21))
        assert [e.seq for e in box.take(20, fresh_share=1.0)] == list(range(81, 101))
        assert [e.seq for e in box.take(3)] == [1, 2, 3]  # 0.25 * 3 rounds down to none
        assert [e.seq for e in box.take(100)] == list(range(1, 101))  # no backlog: all of it
        assert [e.seq for e in box.take(500)] == list(range(1, 101))


def test_take_after_acking_fresh_entries_continues_from_both_ends(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        box.put(records(*range(1, 41)))
        box.ack(entry.seq for entry in box.take(8, fresh_share=0.5))  # 1-4 and 37-40
        assert [e.seq for e in box.take(8, fresh_share=0.5)] == [5, 6, 7, 8, 33, 34, 35, 36]


def test_oldest_age_follows_the_oldest_waiting_entry(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        assert box.oldest_age_seconds(time.time()) is None
        before = time.time()
        box.put(records(1))
        after = time.time()
        box.put(records(2))
        age = box.oldest_age_seconds(after + 100.0)
        assert age is not None
        assert 100.0 <= age <= 100.0 + (after - before)
        assert box.oldest_age_seconds(before - 60.0) == 0.0  # a clock stepped back
        box.ack([1, 2])
        assert box.oldest_age_seconds(after) is None


def test_records_that_are_not_json_store_nothing(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        with pytest.raises(ValueError, match="JSON"):
            box.put([*records(1), {"rtt_ms": float("nan")}])
        with pytest.raises(TypeError):
            box.put([{"when": object()}])
        assert box.depth() == 0
        assert box.put(records(1)) == [1]


def test_bad_arguments_raise_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        Outbox(tmp_path / "outbox.db", max_entries=0)
    with Outbox(tmp_path / "outbox.db") as box:
        with pytest.raises(ValueError, match="limit"):
            box.take(0)
        with pytest.raises(ValueError, match="fresh_share"):
            box.take(10, fresh_share=1.5)
        with pytest.raises(ValueError, match="count"):
            box.reported_dropped(-1)


def test_closed_outbox_raises_outbox_error(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    box.close()
    box.close()
    with pytest.raises(OutboxError, match=re.escape(f"{path}: outbox is closed")):
        box.put(records(1))


def test_file_is_in_wal_mode_with_the_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        box.put(records(1))
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)


def test_each_new_outbox_has_its_own_identity_kept_across_reopen(tmp_path: Path) -> None:
    with Outbox(tmp_path / "a.db") as first, Outbox(tmp_path / "b.db") as second:
        identities = (first.identity, second.identity)
    assert all(re.fullmatch("[0-9a-f]{32}", identity) for identity in identities)
    assert identities[0] != identities[1]
    with Outbox(tmp_path / "a.db") as again:
        assert again.identity == identities[0]


def make_version_1_outbox(path: Path, *entries: tuple[int, dict[str, Any]]) -> None:
    """Write an outbox as an agent from before outbox identities left it (schema 1)."""
    next_seq = max((seq for seq, _ in entries), default=0) + 1
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(
            "CREATE TABLE entries (seq INTEGER PRIMARY KEY, put_at REAL NOT NULL, "
            "record TEXT NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), next_seq INTEGER NOT "
            "NULL, depth INTEGER NOT NULL, dropped INTEGER NOT NULL)"
        )
        conn.execute("INSERT INTO meta VALUES (1, ?, ?, 0)", (next_seq, len(entries)))
        for seq, record in entries:
            conn.execute("INSERT INTO entries VALUES (?, 0, ?)", (seq, json.dumps(record)))
        conn.execute("PRAGMA application_id = 0x53576F62")
        conn.execute("PRAGMA user_version = 1")


def test_a_version_1_outbox_is_upgraded_and_keeps_the_legacy_identity(tmp_path: Path) -> None:
    """The collector holds a version 1 outbox's numbers as legacy: its resends must match."""
    path = tmp_path / "outbox.db"
    make_version_1_outbox(path, (7, {"n": 7}))
    with Outbox(path) as box:
        assert box.identity == "legacy"
        assert waiting(box) == [Entry(7, {"n": 7})]
        assert box.put(records(8)) == [8]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)


def test_the_outbox_and_its_wal_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    permissive = os.umask(0o000)
    try:
        with Outbox(path) as box:
            box.put(records(1))
            modes = {
                p.name: p.stat().st_mode & 0o777
                for p in tmp_path.iterdir()
                if p.name.startswith("outbox.db")
            }
    finally:
        os.umask(permissive)
    assert modes == {"outbox.db": 0o600, "outbox.db-wal": 0o600, "outbox.db-shm": 0o600}


def test_an_empty_file_becomes_an_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.touch()
    with Outbox(path) as box:
        assert box.put(records(1)) == [1]


def _random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(8192))


def _short_text(path: Path) -> None:
    path.write_text("not a database\n")


def _other_sqlite_schema(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("PRAGMA user_version = 1")
        conn.commit()


def _newer_outbox(path: Path) -> None:
    with Outbox(path) as box:
        box.put(records(1))
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 3")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_random_bytes, "not an outbox database"),
        (_short_text, "not an outbox database"),
        (_other_sqlite_schema, "not an outbox database"),
        (_newer_outbox, "schema version 3"),
    ],
    ids=["random-bytes", "short-text", "other-sqlite-schema", "newer-outbox"],
)
def test_foreign_files_are_refused_and_left_alone(
    tmp_path: Path, make: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "outbox.db"
    make(path)
    before = path.read_bytes()
    with pytest.raises(OutboxError, match=re.escape(f"{path}: ") + ".*" + message):
        Outbox(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outbox.db"]


def test_unopenable_paths_raise_outbox_error(tmp_path: Path) -> None:
    for path in (tmp_path / "missing" / "outbox.db", tmp_path):
        with pytest.raises(OutboxError, match=re.escape(f"{path}: ")):
            Outbox(path)


async def test_usable_from_worker_threads(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        batches = await asyncio.gather(
            *(asyncio.to_thread(box.put, records(n, n, n)) for n in range(20))
        )
        acks = [asyncio.to_thread(box.ack, batch[:1]) for batch in batches]
        await asyncio.gather(*acks, asyncio.to_thread(box.take, 10))
        assert await asyncio.to_thread(box.depth) == 40
    assert sorted(seq for batch in batches for seq in batch) == list(range(1, 61))
    assert all(batch == list(range(batch[0], batch[0] + 3)) for batch in batches)


@dataclass
class Model:
    """What the outbox should hold, kept in memory."""

    max_entries: int
    next_seq: int = 1
    dropped: int = 0
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)

    def put(self, batch: list[dict[str, Any]]) -> list[int]:
        seqs = list(range(self.next_seq, self.next_seq + len(batch)))
        self.next_seq += len(batch)
        self.entries.update(zip(seqs, batch, strict=True))
        while len(self.entries) > self.max_entries:
            del self.entries[min(self.entries)]
            self.dropped += 1
        return seqs

    def take(self, limit: int, fresh_share: float) -> list[Entry]:
        seqs = sorted(self.entries)
        if len(seqs) > limit:
            fresh = int(fresh_share * limit)
            seqs = seqs[: limit - fresh] + seqs[len(seqs) - fresh :]
        return [Entry(seq, self.entries[seq]) for seq in seqs]

    def ack(self, seqs: list[int]) -> None:
        for seq in seqs:
            self.entries.pop(seq, None)


JSON_VALUES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
RECORDS = st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=3)


@settings(deadline=None, max_examples=50)
@given(max_entries=st.integers(1, 12), data=st.data())
def test_matches_an_in_memory_model(max_entries: int, data: st.DataObject) -> None:
    model = Model(max_entries)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "outbox.db"
        box = Outbox(path, max_entries=max_entries)
        try:
            for _ in range(data.draw(st.integers(0, 30), label="steps")):
                step = data.draw(st.sampled_from(["put", "take", "ack", "report", "reopen"]))
                if step == "put":
                    batch = data.draw(st.lists(RECORDS, max_size=6))
                    assert box.put(batch) == model.put(batch)
                elif step == "take":
                    limit = data.draw(st.integers(1, 10), label="limit")
                    share = data.draw(st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]), label="share")
                    assert box.take(limit, fresh_share=share) == model.take(limit, share)
                elif step == "ack":
                    seqs = data.draw(st.lists(st.integers(-1, model.next_seq + 2), max_size=8))
                    box.ack(seqs)
                    model.ack(seqs)
                elif step == "report":
                    count = data.draw(st.integers(0, model.dropped + 1), label="count")
                    box.reported_dropped(count)
                    model.dropped = max(0, model.dropped - count)
                else:
                    box.close()
                    box = Outbox(path, max_entries=max_entries)
                assert box.depth() == len(model.entries)
                assert box.dropped() == model.dropped
                assert {entry.seq for entry in waiting(box)} == set(model.entries)
            assert waiting(box) == model.take(len(model.entries) + 1, 0.25)
            assert box.put([{}]) == model.put([{}])
        finally:
            box.close()


CHILD = textwrap.dedent(
    """
    import json, random, sys
    from pathlib import Path
    from agent.outbox import Outbox

    box = Outbox(Path(sys.argv[1]))
    rng = random.Random(int(sys.argv[2]))
    batch = 0
    while True:
        records = [
            {"batch": batch, "index": i, "pad": "\\u00e9" * rng.randrange(400)}
            for i in range(rng.randint(1, 8))
        ]
        seqs = box.put(records)
        print(json.dumps({"seqs": seqs, "records": records}), flush=True)
        batch += 1
    """
)
# Fixed, so a failure names a kill point that can be replayed.
KILL_POINTS = random.Random(20_240_601).sample(range(20, 201), 10)


@pytest.mark.parametrize("kill_after", KILL_POINTS)
def test_kill_9_loses_no_committed_put(tmp_path: Path, kill_after: int) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    path = tmp_path / "outbox.db"
    command = [sys.executable, str(script), str(path), str(kill_after)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        lines: list[str] = []
        while len(lines) < kill_after:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"child exited early: {child.communicate()[1]}")
            lines.append(line)
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    # Lines still in the pipe were printed after their put committed, so they count too;
    # a line cut short by the kill does not.
    lines += [line for line in rest.splitlines(keepends=True) if line.endswith("\n")]
    printed: dict[int, dict[str, Any]] = {}
    for line in lines:
        reported = json.loads(line)
        for seq, record in zip(reported["seqs"], reported["records"], strict=True):
            assert seq not in printed
            printed[seq] = record

    with Outbox(path) as box:
        stored = waiting(box)
        by_seq = {entry.seq: entry.record for entry in stored}
        assert len(by_seq) == len(stored) == box.depth()
        for seq, record in printed.items():
            assert by_seq[seq] == record
        # Only the batch being printed when the child died may be stored but unreported.
        unreported = sorted(set(by_seq) - set(printed))
        last = max(printed)
        assert unreported == list(range(last + 1, last + 1 + len(unreported)))
        assert len(unreported) <= 8
        assert box.put(records(0)) == [max(by_seq) + 1]
