"""Per-key learners: created from a prototype, bounded in memory, evicted to the store.

A key's learner is ``prototype.clone({"seed": key_seed(seed, key)})``, so its state depends
only on the configuration and that key's events. At most ``max_learners`` stay in memory;
the least recently used one is written to the checkpoint store (never dropped) and read back
on its next event.
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
        self._dirty: set = set()  # live keys whose state differs from their stored bytes

    def restore(self, learners: dict) -> None:
        """Adopt a manifest's ``learners`` (loaded lazily on their next event)."""
        self._live.clear()
        self._dirty.clear()
        self._saved = {k: {f: v[f] for f in ("segment", "offset", "length", "sha256")}
                       for k, v in learners.items()}
        self._events = {k: int(v["events"]) for k, v in learners.items()}

    def __len__(self) -> int:
        return len(self._live)

    def get(self, key: str):
        learner = self._live.get(key)
        if learner is not None:
            self._live.move_to_end(key)
            return learner
        if key in self._saved:
            learner = type(self.prototype).from_bytes(self.store.get(self._saved[key]))
        elif self._seeded:
            learner = self.prototype.clone({"seed": key_seed(self.seed, key)})
        else:
            learner = self.prototype.clone()
        self._live[key] = learner
        while len(self._live) > self.max_learners:
            self._evict()
        return learner

    def applied(self, key: str) -> None:
        """Record that one event was applied to ``key``'s learner."""
        self._events[key] = self._events.get(key, 0) + 1
        self._dirty.add(key)

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
        return {key: dict(self._saved[key], events=self._events[key])
                for key in sorted(self._saved)}

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)
