"""Synthetic streams that need memory, as River-style iterables of (x, y).

Each is seeded and replayable: iterating twice yields the same sequence.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MovingAverage", "StepsSinceEvent", "TracePatterning"]


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


class TracePatterning:
    """The trace-patterning task of animal learning (Rafiee et al.; Javed et al. 2023).

    12 binary inputs: 6 conditioned-stimulus bits ``cs0``..``cs5``, the unconditioned
    stimulus ``us`` and 5 distractors ``d1``..``d5``. A trial shows one CS pattern (3 of the 6
    bits, for one step); 10 of the 20 patterns, fixed by the seed, are valid and are followed
    by a one-step US after an inter-stimulus interval drawn from ``isi`` (inclusive); the next
    trial starts an inter-trial interval drawn from ``iti`` after that. Distractor k is on at
    each step with probability 1/(10k).

    Yields ``(x, cumulant, true_return)``: the cumulant is the US bit of x, and the true
    return G_t = C_{t+1} + gamma C_{t+2} + ... is gamma^(steps to the US - 1) from a valid
    trial's CS until its US, else 0 (the convention of the paper's error measure; the next
    trial is at least ``iti`` steps away and unpredictable).
    """

    N_CS, N_DISTRACTORS, ON = 6, 5, 3

    def __init__(self, isi: tuple = (24, 36), iti: tuple = (80, 120), gamma: float = 0.9,
                 seed: int = 0, n: int | None = None):
        if not (1 <= isi[0] <= isi[1] and 1 <= iti[0] <= iti[1]):
            raise ValueError("isi and iti must be (low, high) with 1 <= low <= high")
        self.isi, self.iti, self.gamma, self.seed, self.n = isi, iti, gamma, seed, n

    @property
    def patterns(self) -> list:
        """The 20 CS patterns (tuples of 3 bit indices) in a fixed order."""
        import itertools

        return list(itertools.combinations(range(self.N_CS), self.ON))

    def valid_patterns(self) -> list:
        rng = np.random.default_rng([self.seed, 1])
        chosen = rng.choice(len(self.patterns), size=len(self.patterns) // 2, replace=False)
        return sorted(self.patterns[i] for i in chosen)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, 2])
        patterns, valid = self.patterns, set(self.valid_patterns())
        names = self.feature_names
        p_distractor = np.array([1 / (10 * k) for k in range(1, self.N_DISTRACTORS + 1)])
        t = 0
        while self.n is None or t < self.n:
            pattern = patterns[rng.integers(len(patterns))]
            isi = int(rng.integers(self.isi[0], self.isi[1] + 1))
            iti = int(rng.integers(self.iti[0], self.iti[1] + 1))
            us_step = isi if pattern in valid else None
            distractors = rng.random((isi + iti, self.N_DISTRACTORS)) < p_distractor
            for step in range(isi + iti):
                if self.n is not None and t >= self.n:
                    return
                x = dict.fromkeys(names, 0.0)
                if step == 0:
                    for bit in pattern:
                        x[f"cs{bit}"] = 1.0
                if step == us_step:
                    x["us"] = 1.0
                for k in range(self.N_DISTRACTORS):
                    x[f"d{k + 1}"] = float(distractors[step, k])
                ret = self.gamma ** (us_step - step - 1) if us_step is not None \
                    and step < us_step else 0.0
                yield x, x["us"], ret
                t += 1

    def chunks(self, size: int):
        """The same stream as arrays: (X (rows, 12), cumulants, returns) of up to ``size``
        rows each, with ``feature_names`` the column order; for learn_many."""
        rows = []
        for x, cumulant, ret in iter(self):
            rows.append((list(x.values()), cumulant, ret))
            if len(rows) == size:
                yield self._stack(rows)
                rows = []
        if rows:
            yield self._stack(rows)

    @property
    def feature_names(self) -> list:
        return [f"cs{i}" for i in range(self.N_CS)] + ["us"] + \
            [f"d{k}" for k in range(1, self.N_DISTRACTORS + 1)]

    @staticmethod
    def _stack(rows) -> tuple:
        X = np.array([r[0] for r in rows])
        return X, np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
