"""Per-key learners: created from a prototype, bounded in memory, evicted to the store.

Every key's learner starts as ``prototype.spawn(seed)`` (what ``clone({"seed": seed})``
gives), the same for every key; its state then depends only on the configuration
and that key's events. Columnar learners that share feature names are kept as rows of a
:class:`~streamlearn.table.LearnerTable` (about 14 KB for the default model, created by one
copy); any other learner as an object. At most ``max_learners`` stay in memory; the least
recently used one is written to the store (into its open transaction: durable with the next
checkpoint, never before) and read back on its next event; a full pool evicts a
hundredth of its learners at a time.

A learner that refuses ``reset_after`` events in a row (FloatingPointError: it diverged and
keeps its state, so it would refuse every later event too) is reset: replaced by a fresh
learner. The run of refusals is stored with the learner, so resets happen at the same event
whatever the checkpoint cadence or crashes.

A stored state that cannot be read back (damaged bytes) makes its key *corrupt*: the pool
raises :class:`CorruptLearner` for it until an operator resets the key
(``streamlearn-service reset DIR KEY``); every other key is served as usual.
"""

from __future__ import annotations

import collections
import itertools

from streamlearn.table import LearnerTable, layout_of

from .layouts import StoredLayouts

__all__ = ["LearnerPool", "CorruptLearner"]

# Tables (feature-name sets) a pool keeps; keys of further sets are learner objects.
MAX_TABLES = 64
# A full pool evicts 1/EVICT_FRACTION of its learners at once: one write of many rows
# instead of one statement per learner.
EVICT_FRACTION = 100


class CorruptLearner(Exception):
    """The stored state of a key cannot be read back."""


class _Entry:
    """A key's learner: an object (``learner``) or a row of ``table`` at ``steps`` steps."""

    __slots__ = ("learner", "table", "row", "steps", "events", "refused")

    def __init__(self, learner=None, table=None, row=None, steps=0, events=0, refused=0):
        self.learner, self.table, self.row, self.steps = learner, table, row, steps
        self.events, self.refused = events, refused


class LearnerPool:
    """key -> learner, LRU-bounded; tracks each key's applied-event count and refusals.
    ``get`` returns the key's learner to step at once: a table's worker holds the key's row
    only until the next ``get``, and ``applied`` or ``refused`` report the step."""

    def __init__(self, prototype, seed: int, store, max_learners: int, on_evict=None,
                 on_corrupt=None):
        if max_learners < 1:
            raise ValueError("max_learners must be >= 1")
        self.prototype = prototype
        self.seed = seed
        self.store = store
        self.max_learners = max_learners
        self.on_evict = on_evict
        self.on_corrupt = on_corrupt
        self._live: collections.OrderedDict = collections.OrderedDict()  # key -> _Entry
        self._dirty: set = set()    # live keys whose state differs from the stored one
        self._corrupt: dict = {}    # key -> why its stored state cannot be read
        self._tables: dict = {}     # feature names -> LearnerTable
        self.layouts = StoredLayouts(store)
        # a key that is not live can be stored only if the store held learners at the start
        # or this pool evicted one: until then a new key needs no lookup
        self._maybe_stored = not store.empty()
        layout = layout_of(self._spawn())
        self._kind = layout[:2] if layout is not None else None  # (class, config) of rows

    def __len__(self) -> int:
        return len(self._live)

    def get(self, key: str, x=None):
        """``key``'s learner; ``x``, the event it is about to step on, lets a new key start
        with its features (as its first step would add them)."""
        entry = self._live.get(key)
        if entry is not None:
            self._live.move_to_end(key)
        else:
            entry = self._load(key, x)
            self._live[key] = entry
            if len(self._live) > self.max_learners:
                self._evict(len(self._live) - self.max_learners
                            + self.max_learners // EVICT_FRACTION)
        if entry.table is None:
            return entry.learner
        return entry.table.use(entry.row, entry.steps)

    def _load(self, key: str, x) -> _Entry:
        if key in self._corrupt:
            raise CorruptLearner(self._corrupt[key])
        stored = self.store.get(key) if self._maybe_stored else None
        if stored is None:
            return self._new(tuple(x) if type(x) is dict else ())
        state, events, refused = stored
        try:
            entry = self._read(state)
        except ValueError as exc:  # SerializationError: damaged bytes
            self._corrupt[key] = f"the stored state of key {key!r} is damaged: {exc}"
            if self.on_corrupt is not None:
                self.on_corrupt(key, self._corrupt[key])
            raise CorruptLearner(self._corrupt[key]) from None
        entry.events, entry.refused = events, refused
        return entry

    def _read(self, state: bytes) -> _Entry:
        """The entry of a stored state: a row state, or a learner's ``to_bytes()`` (as a row
        where it is one of a table's)."""
        loaded = self.layouts.load(state)
        if loaded is not None:
            table, row, steps = loaded
            return _Entry(table=table, row=row, steps=steps)
        for table in reversed(self._tables.values()):
            read = table.read(state)
            if read is not None:
                return _Entry(table=table, row=read[0], steps=read[1])
        return self._place(type(self.prototype).from_bytes(state))

    def _spawn(self):
        return self.prototype.spawn(self.seed)

    def _table(self, names: tuple):
        """The table of learners with feature ``names``, made if there is room; None where
        the prototype's learners are not table rows."""
        table = self._tables.get(names)
        if table is None and self._kind is not None and len(self._tables) < MAX_TABLES:
            fresh = self._spawn()
            try:
                fresh.add_features(list(names))
            except (TypeError, ValueError):  # names a learner cannot take
                return None
            # the table read back from the store, if it holds this layout already
            table = self._tables[names] = self.layouts.add(LearnerTable(fresh))
            # into the open transaction: durable with the first rows that name it
            self.store.put_layout(table.layout_id, table.layout_state)
        return table

    def _new(self, names: tuple) -> _Entry:
        """A fresh learner, starting with feature ``names`` (a row when it can be one)."""
        table = self._table(names)
        if table is None:
            return _Entry(learner=self._spawn())
        return _Entry(table=table, row=table.new_row())

    def _place(self, learner) -> _Entry:
        """An entry for ``learner``: a row of the table of its layout where that can be one
        of this pool's, else the object."""
        layout = layout_of(learner)
        if layout is not None and layout[:2] == self._kind:
            table = self._table(layout[2])
            if table is not None:
                try:
                    return _Entry(table=table, row=table.adopt(learner), steps=learner._steps)
                except ValueError:  # another structure (lateral connections of another seed)
                    pass
        return _Entry(learner=learner)

    def _settle(self, entry: _Entry) -> None:
        """Take the step the worker of ``entry``'s table just took into the entry."""
        table = entry.table
        if table is None:
            return
        if table.left():  # it grew new features: into the table of its new names
            table.drop(entry.row)
            moved = self._place(table.detach())
            entry.learner, entry.table, entry.row, entry.steps = \
                moved.learner, moved.table, moved.row, moved.steps
        else:
            entry.steps = table.worker._steps

    def applied(self, key: str) -> None:
        """Record that one event was applied to ``key``'s learner."""
        entry = self._live[key]
        self._settle(entry)
        entry.events += 1
        entry.refused = 0
        self._dirty.add(key)

    def refused(self, key: str, reset_after: int) -> bool:
        """Record that ``key``'s learner refused an event; after ``reset_after`` in a row,
        reset it (its event count goes on) and return True."""
        entry = self._live[key]
        self._settle(entry)
        entry.refused += 1
        self._dirty.add(key)
        if entry.refused < reset_after:
            return False
        if entry.table is not None:
            entry.table.drop(entry.row)
        fresh = self._new(())
        entry.learner, entry.table, entry.row, entry.steps, entry.refused = \
            fresh.learner, fresh.table, fresh.row, 0, 0
        return True

    def _row(self, key: str) -> tuple:
        entry = self._live[key]
        state = entry.learner.to_bytes() if entry.table is None \
            else entry.table.dump(entry.row, entry.steps)
        return key, state, entry.events, entry.refused

    def _evict(self, count: int) -> None:
        """Write the ``count`` least recently used learners that changed into the store in
        one call, and drop them from memory."""
        keys = list(itertools.islice(self._live, count))
        self._maybe_stored = True
        self.store.put_many(self._row(key) for key in keys if key in self._dirty)
        for key in keys:
            self._dirty.discard(key)
            entry = self._live.pop(key)
            if entry.table is not None:
                entry.table.drop(entry.row)
            if self.on_evict is not None:
                self.on_evict()

    def flush(self) -> int:
        """Write every dirty learner into the store's open transaction (the checkpoint
        commits them); returns how many."""
        self.store.put_many(self._row(key) for key in self._dirty)  # one state at a time
        written = len(self._dirty)
        self._dirty.clear()
        return written

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)
