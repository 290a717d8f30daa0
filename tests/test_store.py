"""The state store (SQLite): a checkpoint is one transaction of what changed; a crash, a
failed write or a full disk at any point leaves the last checkpoint intact; one writer."""

import random
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from service_helpers import wait_for
from streamlearn.service.store import StateStore, StoreError


def _checkpoint(store, step: int, keys=("a", "b", "c")) -> None:
    store.put_many([(key, bytes([step % 256]) * 1000, step, 0) for key in keys])
    store.commit({"p": [0, step]}, "file", {"files": {"0": {"step": step}}})


def _assert_checkpoint(directory, step: int, keys=("a", "b", "c")) -> None:
    store = StateStore(directory, writer=False)
    try:
        assert store.positions() == {"p": [0, step]}
        assert store.meta("source_state") == {"files": {"0": {"step": step}}}
        for key in keys:
            assert store.get(key) == (bytes([step % 256]) * 1000, step, 0)
    finally:
        store.close()


def test_round_trip_and_uncommitted_writes_are_dropped(tmp_path):
    store = StateStore(tmp_path)
    _checkpoint(store, 1)
    store.put_many([("a", b"not committed", 99, 0), ("new", b"x", 1, 0)])
    assert store.get("a") == (b"not committed", 99, 0)  # the writer sees its transaction
    _assert_checkpoint(tmp_path, 1)                     # readers see the checkpoint
    store.close()
    _assert_checkpoint(tmp_path, 1)
    assert StateStore(tmp_path, writer=False).get("new") is None


def test_layouts_are_kept_with_the_checkpoint(tmp_path):
    store = StateStore(tmp_path)
    store.put_layout(b"12345678", b"layout")
    assert store.layout(b"12345678") == b"layout"
    store.close()  # not committed: dropped with the transaction
    store = StateStore(tmp_path)
    assert store.layout(b"12345678") is None
    store.put_layout(b"12345678", b"layout")
    _checkpoint(store, 1)
    store.close()
    assert StateStore(tmp_path, writer=False).layout(b"12345678") == b"layout"


def test_a_schema_1_database_is_read_and_upgraded(tmp_path):
    """Schema 1 (no layouts table) is what the store wrote before row states."""
    db = sqlite3.connect(tmp_path / "state.sqlite")
    for statement in ("CREATE TABLE learners (key TEXT PRIMARY KEY, state BLOB NOT NULL, "
                      "events INTEGER NOT NULL, refused INTEGER NOT NULL DEFAULT 0)",
                      "CREATE TABLE positions (partition TEXT PRIMARY KEY, position TEXT NOT NULL)",
                      "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
                      "INSERT INTO learners VALUES ('a', x'0102', 3, 0)",
                      "INSERT INTO positions VALUES ('p', '[0, 7]')",
                      "PRAGMA user_version=1"):
        db.execute(statement)
    db.commit()
    db.close()
    reader = StateStore(tmp_path, writer=False)
    assert reader.get("a") == (b"\x01\x02", 3, 0) and reader.layout(b"12345678") is None
    reader.close()
    store = StateStore(tmp_path)
    assert store.get("a") == (b"\x01\x02", 3, 0) and store.positions() == {"p": [0, 7]}
    store.put_layout(b"12345678", b"layout")
    store.commit({"p": [0, 8]}, "file")
    store.close()
    reader = StateStore(tmp_path, writer=False)
    assert reader.layout(b"12345678") == b"layout"
    assert reader.db.execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_newer_schema_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "state.sqlite")
    db.execute("PRAGMA user_version=3")
    db.close()
    for writer in (True, False):
        with pytest.raises(StoreError, match="schema version 3"):
            StateStore(tmp_path, writer=writer)


class _Failing:
    """A connection that fails at its ``fail_at``-th statement, as a failed write or fsync
    inside SQLite surfaces."""

    def __init__(self, db, fail_at: int, error):
        self.db, self.calls, self.fail_at, self.error = db, 0, fail_at, error

    def __getattr__(self, name):
        attribute = getattr(self.db, name)
        if name not in ("execute", "executemany"):
            return attribute

        def call(*args):
            self.calls += 1
            if self.calls == self.fail_at:
                raise self.error
            return attribute(*args)
        return call


@pytest.mark.parametrize("error", [sqlite3.OperationalError("disk I/O error"),
                                   sqlite3.DatabaseError("database disk image is malformed")])
def test_a_fault_at_any_statement_of_a_checkpoint_keeps_the_last_one(tmp_path, error):
    for fail_at in range(1, 6):  # put_many, positions, meta, COMMIT, BEGIN
        directory = tmp_path / str(fail_at)
        store = StateStore(directory)
        _checkpoint(store, 1)
        store.db = _Failing(store.db, fail_at, error)
        with pytest.raises(StoreError):
            _checkpoint(store, 2)
        committed = store.db.calls >= 4 and fail_at == 5  # only BEGIN failed: 2 is durable
        store.db = store.db.db
        store.close()
        _assert_checkpoint(directory, 2 if committed else 1)


def test_a_full_disk_keeps_the_last_checkpoint(tmp_path):
    store = StateStore(tmp_path)
    _checkpoint(store, 1)
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count={pages + 2}")  # SQLITE_FULL, as ENOSPC gives
    with pytest.raises(StoreError, match="full"):
        _checkpoint(store, 2, keys=[f"k{i}" for i in range(200)])
    store.close()
    _assert_checkpoint(tmp_path, 1)
    store = StateStore(tmp_path)  # and the store works again
    _checkpoint(store, 3)
    store.close()
    _assert_checkpoint(tmp_path, 3)


WRITER = textwrap.dedent("""
    import sys
    from streamlearn.service.store import StateStore
    store = StateStore(sys.argv[1])
    keys = [f"k{i}" for i in range(300)]
    step = 0
    while True:
        step += 1
        store.put_many([(key, bytes([step % 256]) * 2000, step, 0) for key in keys])
        store.commit({"p": [0, step]}, "file")
        print(step, flush=True)
""")


def test_sigkill_at_random_points_leaves_one_whole_checkpoint(tmp_path):
    rng = random.Random(1)
    directory = tmp_path / "ck"
    last = 0
    for _ in range(8):
        # cwd: away from the source tree, whose streamlearn/ has no compiled kernels
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(directory)],
                                stdout=subprocess.PIPE, cwd=tmp_path)
        assert proc.stdout.readline(), "the writer did not start"  # one checkpoint done
        wait_for(lambda: True, timeout=1, interval=rng.uniform(0.001, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = StateStore(directory, writer=False)
        step = store.positions()["p"][1]
        rows = list(store.summary())
        store.close()
        assert step >= 1
        assert len(rows) == 300
        assert {(events, state) for _, events, _, state in rows} == {
            (step, bytes([step % 256]) * 2000)}
        last = step
    assert last > 0


def test_one_writer_per_folder(tmp_path):
    first = StateStore(tmp_path)
    with pytest.raises(StoreError, match="in use"):
        StateStore(tmp_path)
    first.close()
    StateStore(tmp_path).close()


def test_reading_a_missing_folder_creates_nothing(tmp_path):
    with pytest.raises(StoreError, match="no checkpoint"):
        StateStore(tmp_path / "nowhere", writer=False)
    assert not (tmp_path / "nowhere").exists()


def test_a_folder_of_the_old_format_is_refused_with_advice(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(StoreError, match="older streamlearn"):
        StateStore(tmp_path)


def test_no_write_is_taken_after_a_failed_one(tmp_path):
    store = StateStore(tmp_path)
    _checkpoint(store, 1)
    store.db = _Failing(store.db, 5, sqlite3.OperationalError("disk I/O error"))
    with pytest.raises(StoreError):
        _checkpoint(store, 2)  # committed, but the next transaction could not be opened
    with pytest.raises(StoreError, match="earlier write failed"):
        store.put_many([("a", b"would autocommit", 9, 0)])
    store.db = store.db.db
    store.close()
    _assert_checkpoint(tmp_path, 2)
