"""Per-key learners: created from a prototype, bounded in memory, evicted to the store.

A key's learner is ``prototype.clone({"seed": key_seed(seed, key)})``, so its state depends
only on the configuration and that key's events. At most ``max_learners`` stay in memory;
the least recently used one is written to the store (into its open transaction: durable
with the next checkpoint, never before) and read back on its next event.

A learner that refuses ``reset_after`` events in a row (FloatingPointError: it diverged and
keeps its state, so it would refuse every later event too) is reset: replaced by the
prototype's fresh learner for that key. The run of refusals is stored with the learner, so
resets happen at the same event whatever the checkpoint cadence or crashes.

A stored state that cannot be read back (damaged bytes) makes its key *corrupt*: the pool
raises :class:`CorruptLearner` for it until an operator resets the key
(``streamlearn-service reset DIR KEY``); every other key is served as usual.
"""

from __future__ import annotations

import collections
import zlib

__all__ = ["LearnerPool", "CorruptLearner", "key_seed"]


class CorruptLearner(Exception):
    """The stored state of a key cannot be read back."""


def key_seed(seed: int, key: str) -> int:
    """A 63-bit seed from the configured seed and the key (stable across processes)."""
    return ((seed & 0x7FFFFFFF) << 32 | zlib.crc32(key.encode("utf-8", "surrogatepass"))) \
        & (2**63 - 1)


class _Entry:
    __slots__ = ("learner", "events", "refused")

    def __init__(self, learner, events: int = 0, refused: int = 0):
        self.learner, self.events, self.refused = learner, events, refused


class LearnerPool:
    """key -> learner, LRU-bounded; tracks each key's applied-event count and refusals."""

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
        self._seeded = "seed" in prototype._get_params()
        self._live: collections.OrderedDict = collections.OrderedDict()  # key -> _Entry
        self._dirty: set = set()    # live keys whose state differs from the stored one
        self._corrupt: dict = {}    # key -> why its stored state cannot be read

    def __len__(self) -> int:
        return len(self._live)

    def get(self, key: str):
        return self._entry(key).learner

    def _entry(self, key: str) -> _Entry:
        entry = self._live.get(key)
        if entry is not None:
            self._live.move_to_end(key)
            return entry
        if key in self._corrupt:
            raise CorruptLearner(self._corrupt[key])
        row = self.store.get(key)
        if row is None:
            entry = _Entry(self._fresh(key))
        else:
            state, events, refused = row
            try:
                entry = _Entry(type(self.prototype).from_bytes(state), events, refused)
            except ValueError as exc:  # SerializationError: damaged bytes
                self._corrupt[key] = f"the stored state of key {key!r} is damaged: {exc}"
                if self.on_corrupt is not None:
                    self.on_corrupt(key, self._corrupt[key])
                raise CorruptLearner(self._corrupt[key]) from None
        self._live[key] = entry
        while len(self._live) > self.max_learners:
            self._evict()
        return entry

    def _fresh(self, key: str):
        if hasattr(self.prototype, "spawn"):
            return self.prototype.spawn(key_seed(self.seed, key))
        if self._seeded:
            return self.prototype.clone({"seed": key_seed(self.seed, key)})
        return self.prototype.clone()

    def applied(self, key: str) -> None:
        """Record that one event was applied to ``key``'s learner."""
        entry = self._live[key]
        entry.events += 1
        entry.refused = 0
        self._dirty.add(key)

    def refused(self, key: str, reset_after: int) -> bool:
        """Record that ``key``'s learner refused an event; after ``reset_after`` in a row,
        reset it (its event count goes on) and return True."""
        entry = self._live[key]
        entry.refused += 1
        self._dirty.add(key)
        if entry.refused < reset_after:
            return False
        entry.learner, entry.refused = self._fresh(key), 0
        return True

    def _row(self, key: str) -> tuple:
        entry = self._live[key]
        return key, entry.learner.to_bytes(), entry.events, entry.refused

    def _evict(self) -> None:
        key = next(iter(self._live))
        if key in self._dirty:
            self.store.put_many([self._row(key)])
            self._dirty.discard(key)
        del self._live[key]
        if self.on_evict is not None:
            self.on_evict()

    def flush(self) -> int:
        """Write every dirty learner into the store's open transaction (the checkpoint
        commits them); returns how many."""
        rows = [self._row(key) for key in self._dirty]
        self.store.put_many(rows)
        self._dirty.clear()
        return len(rows)

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)
