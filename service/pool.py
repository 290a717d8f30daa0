"""Per-key learners: created from a prototype, bounded in memory, evicted to the store.

A key's learner is ``prototype.clone({"seed": key_seed(seed, key)})``, so its state depends
only on the configuration and that key's events. At most ``max_learners`` stay in memory;
the least recently used one is written to the checkpoint store (never dropped) and read back
on its next event.

A learner that refuses ``reset_after`` events in a row (FloatingPointError: it diverged and
keeps its state, so it would refuse every later event too) is reset: replaced by the
prototype's fresh learner for that key. The run of refusals is part of the checkpoint, so
resets happen at the same event whatever the checkpoint cadence or crashes.
"""

from __future__ import annotations

import collections
import zlib

__all__ = ["LearnerPool", "key_seed"]


def key_seed(seed: int, key: str) -> int:
    """A 63-bit seed from the configured seed and the key (stable across processes)."""
    return ((seed & 0x7FFFFFFF) << 32 | zlib.crc32(key.encode("utf-8", "surrogatepass"))) \
        & (2**63 - 1)


class LearnerPool:
    """key -> learner, LRU-bounded; tracks each key's applied-event count and saved blob."""

    def __init__(self, prototype, seed: int, store, max_learners: int, on_evict=None):
        if max_learners < 1:
            raise ValueError("max_learners must be >= 1")
        self.prototype = prototype
        self.seed = seed
        self.store = store
        self.max_learners = max_learners
        self.on_evict = on_evict
        self._seeded = "seed" in prototype._get_params()
        self._live: collections.OrderedDict = collections.OrderedDict()
        self._saved: dict = {}    # key -> store reference of its newest stored bytes
        self._events: dict = {}   # key -> events applied
        self._refused: dict = {}  # key -> events refused in a row (only keys with some)
        self._dirty: set = set()  # live keys whose state differs from their stored bytes

    def restore(self, learners: dict) -> None:
        """Adopt a manifest's ``learners`` (loaded lazily on their next event)."""
        self._live.clear()
        self._dirty.clear()
        self._saved = {k: {f: v[f] for f in ("segment", "offset", "length", "sha256")}
                       for k, v in learners.items()}
        self._events = {k: int(v["events"]) for k, v in learners.items()}
        self._refused = {k: int(v["refused"]) for k, v in learners.items() if v.get("refused")}

    def __len__(self) -> int:
        return len(self._live)

    def get(self, key: str):
        learner = self._live.get(key)
        if learner is not None:
            self._live.move_to_end(key)
            return learner
        if key in self._saved:
            learner = type(self.prototype).from_bytes(self.store.get(self._saved[key]))
        else:
            learner = self._fresh(key)
        self._live[key] = learner
        while len(self._live) > self.max_learners:
            self._evict()
        return learner

    def _fresh(self, key: str):
        if self._seeded:
            return self.prototype.clone({"seed": key_seed(self.seed, key)})
        return self.prototype.clone()

    def applied(self, key: str) -> None:
        """Record that one event was applied to ``key``'s learner."""
        self._events[key] = self._events.get(key, 0) + 1
        self._refused.pop(key, None)
        self._dirty.add(key)

    def refused(self, key: str, reset_after: int) -> bool:
        """Record that ``key``'s learner refused an event; after ``reset_after`` in a row,
        reset it (its event count goes on) and return True."""
        count = self._refused.get(key, 0) + 1
        if count < reset_after:
            self._refused[key] = count
            return False
        self._refused.pop(key, None)
        self._live[key] = self._fresh(key)
        self._live.move_to_end(key)
        self._dirty.add(key)
        return True

    def _save(self, key: str, learner) -> None:
        self._saved[key] = self.store.put(learner.to_bytes())
        self._dirty.discard(key)

    def _evict(self) -> None:
        key, learner = self._live.popitem(last=False)
        if key in self._dirty:
            self._save(key, learner)
        if self.on_evict is not None:
            self.on_evict()

    def snapshot(self) -> dict:
        """Store every dirty learner, move learners out of mostly-dead segments; return the
        manifest's ``learners`` entry."""
        for key in list(self._dirty):
            self._save(key, self._live[key])
        for key in self.store.to_compact(self._saved):
            self._saved[key] = self.store.put(self.store.get(self._saved[key]))
        return {key: dict(self._saved[key], events=self._events[key],
                          **({"refused": self._refused[key]} if key in self._refused else {}))
                for key in sorted(self._saved)}

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)
