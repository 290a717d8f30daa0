"""The state store: learner states and source positions in one SQLite database.

``DIR/state.sqlite`` (WAL mode, ``synchronous=FULL``) holds four tables::

    learners(key TEXT PRIMARY KEY, state BLOB, events INTEGER, refused INTEGER)
    layouts(id BLOB PRIMARY KEY, state BLOB)                -- what row states share
    positions(partition TEXT PRIMARY KEY, position TEXT)    -- JSON of the source's encoding
    meta(name TEXT PRIMARY KEY, value TEXT)                 -- 'source', 'source_state' (JSON)

``state`` is a row state (:mod:`streamlearn.table`: checksummed values whose layout, a fresh
learner's ``to_bytes()``, is stored once in ``layouts``) or a learner's ``to_bytes()``
(checksummed, no pickle); ``events`` counts the events applied to it, ``refused`` the
events it refused in a row (LearnerPool). Schema 1 had no ``layouts``: the writer adds it. The writer
keeps one transaction open at all times: learners evicted between checkpoints are written
into it, and a checkpoint writes the dirty learners and the positions into it and commits.
So the database only ever holds a checkpoint's learners together with its positions, a
crash or a full disk at any point leaves the last committed checkpoint as it was, and a
checkpoint costs what changed since the last one. The writer also holds an exclusive
``flock`` on the database file itself for its lifetime (released however the process ends),
so a second writer is refused even if other files of the folder are deleted. Readers
(``inspect``, an operator's ``sqlite3``) see the last committed checkpoint meanwhile.
Nothing here unpickles anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3

__all__ = ["StateStore", "StoreError", "DATABASE"]

DATABASE = "state.sqlite"
SCHEMA_VERSION = 2
_READS = (1, SCHEMA_VERSION)  # schema 1 holds no row states, so reads as 2
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS learners (key TEXT PRIMARY KEY, state BLOB NOT NULL, "
    "events INTEGER NOT NULL, refused INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS layouts (id BLOB PRIMARY KEY, state BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS positions (partition TEXT PRIMARY KEY, position TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


# An upsert rewrites a stored learner's row in place: REPLACE would delete it and insert it
# anew (a new rowid, two changes of the key index and a freed page), which made a
# checkpoint's cost grow with the number of keys stored.
_PUT_LEARNER = ("INSERT INTO learners (key, state, events, refused) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET state = excluded.state, "
                "events = excluded.events, refused = excluded.refused")
# Pages of a new database (SQLite's default is 4 KiB): a 4-column learner's row state (2.4
# KB) then shares a page with two others instead of holding one alone, and a default one
# (11.3 KB) fills a leaf cell and one overflow page.
PAGE_BYTES = 8_192
# The writer's page cache (KiB; SQLite's default is 2 MB): a checkpoint of many learners
# then keeps the B-tree's inner pages in memory instead of spilling them to the WAL over
# and over.
CACHE_KIB = 65_536


class StoreError(RuntimeError):
    """A state store that cannot be opened, locked or written."""


class StateStore:
    """The store of one checkpoint folder. ``writer=True`` creates the folder and database
    if needed, takes the single-writer lock and opens the write transaction; otherwise the
    database is opened read-only and must exist (nothing is created)."""

    def __init__(self, directory, writer: bool = True):
        self.directory = os.path.abspath(directory)
        self.path = os.path.join(self.directory, DATABASE)
        self._lock_fd = None
        self._failed = None  # why a write failed: no write after it (see _errors)
        self._writer = writer
        if os.path.exists(os.path.join(self.directory, "manifest.json")) \
                and not os.path.exists(self.path):
            raise StoreError(f"{self.directory} holds a checkpoint of an older streamlearn "
                             "(manifest.json and segments/), which this version does not read: "
                             "run the older version to finish, or start with a new "
                             "--checkpoint-dir (the events are then learned anew)")
        if not writer:
            if not os.path.exists(self.path):
                raise StoreError(f"no checkpoint in {self.directory}")
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                      isolation_level=None, check_same_thread=False)
            self._check_version()
            return
        os.makedirs(self.directory, exist_ok=True)
        self._lock_fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreError(f"{self.directory} is in use by another streamlearn-service "
                             "process") from None
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        with self._errors("open"):
            self.db.execute(f"PRAGMA page_size={PAGE_BYTES}")  # only a new database takes it
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self._check_version()
            for statement in _SCHEMA:
                self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self.db.execute("BEGIN IMMEDIATE")

    def _check_version(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, *_READS) or (version == 0 and not self._writer):
            raise StoreError(f"{self.path} has schema version {version}; this version reads "
                             f"{', '.join(map(str, _READS))}")

    @contextlib.contextmanager
    def _errors(self, what: str, write: bool = False):
        """sqlite3 errors as StoreError. After a failed write the transaction may be gone
        (SQLite rolls back on a full disk), so the store takes no more writes: what it
        would write next could be committed without what came before it."""
        if write and self._failed:
            raise StoreError(f"{what} refused: an earlier write failed ({self._failed})")
        try:
            yield
        except sqlite3.Error as exc:
            if write:
                self._failed = str(exc)
            raise StoreError(f"{what} failed on {self.path}: {exc}") from None

    # ---- reading ------------------------------------------------------------------------

    def get(self, key: str):
        """(state bytes, events, refused) of ``key``, or None if it has no state."""
        with self._errors(f"reading key {key!r}"):
            row = self.db.execute("SELECT state, events, refused FROM learners WHERE key = ?",
                                  (key,)).fetchone()
        return None if row is None else (bytes(row[0]), row[1], row[2])

    def layout(self, layout_id: bytes):
        """The state of a layout (``LearnerTable.layout_state``), or None if not stored."""
        with self._errors("reading layouts"):
            try:
                row = self.db.execute("SELECT state FROM layouts WHERE id = ?",
                                      (layout_id,)).fetchone()
            except sqlite3.OperationalError:  # schema 1, read-only: no row states either
                return None
        return None if row is None else bytes(row[0])

    def positions(self) -> dict:
        with self._errors("reading positions"):
            rows = self.db.execute("SELECT partition, position FROM positions").fetchall()
        return {partition: json.loads(position) for partition, position in rows}

    def meta(self, name: str, default=None):
        with self._errors("reading meta"):
            row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return default if row is None else json.loads(row[0])

    def summary(self):
        """(key, events, sha256 of the state, state) of every stored learner, by key."""
        with self._errors("reading learners"):
            for key, state, events in self.db.execute(
                    "SELECT key, state, events FROM learners ORDER BY key"):
                yield key, events, hashlib.sha256(state).hexdigest(), bytes(state)

    def empty(self) -> bool:
        """Whether no learner state is stored."""
        with self._errors("reading learners"):
            return self.db.execute("SELECT 1 FROM learners LIMIT 1").fetchone() is None

    def events(self) -> int:
        """Events applied to every stored learner (a cheap look at progress)."""
        with self._errors("reading learners"):
            return self.db.execute("SELECT COALESCE(SUM(events), 0) FROM learners").fetchone()[0]

    # ---- writing ------------------------------------------------------------------------

    def put_many(self, rows) -> None:
        """Write (key, state bytes, events, refused) rows into the open transaction: durable
        with the next commit, never before it."""
        with self._errors("writing learners", write=True):
            self.db.executemany(_PUT_LEARNER, rows)

    def put_layout(self, layout_id: bytes, state: bytes) -> None:
        """Write a layout into the open transaction (its state is a function of its id, so
        rewriting it repairs a damaged copy)."""
        with self._errors("writing layouts", write=True):
            self.db.execute("INSERT OR REPLACE INTO layouts (id, state) VALUES (?, ?)",
                            (layout_id, state))

    def delete(self, key: str) -> bool:
        """Remove ``key``'s state (in the open transaction); False if it had none."""
        with self._errors(f"deleting key {key!r}", write=True):
            return self.db.execute("DELETE FROM learners WHERE key = ?", (key,)).rowcount > 0

    def commit(self, positions: dict, source: str, source_state: dict | None = None) -> None:
        """Write ``positions`` and the source's name and state, and commit everything written
        since the last commit as one checkpoint; then open the next transaction."""
        with self._errors("checkpoint", write=True):
            self.db.executemany("INSERT OR REPLACE INTO positions (partition, position) "
                                "VALUES (?, ?)",
                                [(p, json.dumps(v)) for p, v in positions.items()])
            self.db.executemany("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                                [("source", json.dumps(source)),
                                 ("source_state", json.dumps(source_state or {}))])
            self.db.execute("COMMIT")
            self.db.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        """Close without committing (what was not committed is dropped), then unlock."""
        with contextlib.suppress(sqlite3.Error):
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
        self.db.close()
        if self._lock_fd is not None:  # after the connection: closing it drops its locks
            os.close(self._lock_fd)
            self._lock_fd = None
