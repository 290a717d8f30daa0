"""Synthetic streams that need memory, as River-style iterables of (x, y).

Each is seeded and replayable: iterating twice yields the same sequence.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MovingAverage", "StepsSinceEvent"]


class MovingAverage:
    """y_t = offset + scale * e_t with e_t = beta e_{t-1} + (1 - beta) u_t, u_t ~ N(0, 1).

    x_t = {"u": u_t, "noise": N(0, 1)}: the present input explains only part of y_t, the
    rest is the memory of about 1 / (1 - beta) past inputs.
    """

    def __init__(self, n: int = 20_000, beta: float = 0.9, scale: float = 100.0,
                 offset: float = 1000.0, seed: int = 0):
        self.n, self.beta, self.scale, self.offset, self.seed = n, beta, scale, offset, seed

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        u, noise = rng.normal(size=(2, self.n))
        e = 0.0
        for t in range(self.n):
            e = self.beta * e + (1 - self.beta) * u[t]
            yield {"u": float(u[t]), "noise": float(noise[t])}, self.offset + self.scale * e


class StepsSinceEvent:
    """y_t = steps since the last event (each step an event with probability p), capped.

    x_t = {"event": 0 or 1, "distractor": N(0, 1)}: y must be counted from the past.
    """

    def __init__(self, n: int = 20_000, p: float = 0.1, cap: int = 20, seed: int = 0):
        self.n, self.p, self.cap, self.seed = n, p, cap, seed

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        events = rng.random(self.n) < self.p
        distractor = rng.normal(size=self.n)
        count = 0
        for t in range(self.n):
            count = 0 if events[t] else min(count + 1, self.cap)
            yield {"event": float(events[t]), "distractor": float(distractor[t])}, float(count)
