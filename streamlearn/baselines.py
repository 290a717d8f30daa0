"""Baselines for the benchmarks: a dense LSTM learning TD(lambda) with truncated BPTT."""

from __future__ import annotations

import numpy as np

from streamlearn._tbptt import TruncatedLSTM

__all__ = ["TruncatedBPTTTD", "FullRTRL"]


class TruncatedBPTTTD:
    """A dense LSTM (``hidden`` units) predicting the discounted sum of a cumulant by
    TD(lambda), its gradient truncated to the last ``truncation`` steps; the same RMSProp
    step, eligibility traces and head step (divided by the number of units) as
    :class:`~streamlearn.ColumnarTD`. Features are fixed by ``feature_names``.

    ``learn_one(x, c)`` advances with x, learns from the cumulant c observed with it and
    returns V of the new state, the value scored against the return.
    """

    def __init__(self, feature_names: list, hidden: int = 10, truncation: int = 8,
                 step_size: float = 0.001, gamma: float = 0.9, lambda_: float = 0.99,
                 init_scale: float = 0.1, seed: int = 0):
        self.feature_names = list(feature_names)
        m, k = len(self.feature_names), truncation
        rng = np.random.default_rng(seed)
        self._arrays = {
            "W": rng.uniform(-init_scale, init_scale, size=(4, hidden, m + hidden + 1)),
            "E": np.zeros((4, hidden, m + hidden + 1)), "V": np.ones((4, hidden, m + hidden + 1)),
            "w": np.zeros(hidden), "ew": np.zeros(hidden), "vw": np.ones(hidden),
            # bias, its eligibility, its RMSProp moment, V_prev, has_prev (H_* in _tbptt.pyx)
            "scalars": np.array([0.0, 0.0, 1.0, 0.0, 0.0]),
            "xs": np.zeros((k + 1, m)), "hs": np.zeros((k + 1, hidden)),
            "cs": np.zeros((k + 1, hidden)), "acts": np.zeros((k + 1, 4, hidden)),
        }
        self._kernel = TruncatedLSTM(self._arrays, step_size, gamma, lambda_, k)
        self._x = np.zeros(m)
        self.hidden, self.truncation = hidden, truncation

    @property
    def n_parameters(self) -> int:
        return self._arrays["W"].size + self.hidden + 1

    def multiply_adds_per_step(self) -> int:
        """Forward, truncated backward (about two per parameter per step back), eligibility
        and update: (3 + 2k) per recurrent parameter."""
        return (3 + 2 * self.truncation) * self._arrays["W"].size

    def learn_one(self, x: dict, cumulant: float) -> float:
        for j, name in enumerate(self.feature_names):
            self._x[j] = x.get(name, 0.0)
        return self._kernel.step(self._x, float(cumulant))


class FullRTRL:
    """Real-time recurrent learning for a dense LSTM (``hidden`` units, ``n_inputs`` inputs):
    the full sensitivity matrices dh/dtheta and dc/dtheta, (hidden x parameters) each,
    carried forward every step, which costs O(hidden^2 x parameters) = O(n^4) for n units.
    numpy, float64; ``step(x)`` advances and returns h. A cost reference for the benchmarks,
    not a learner: it only carries the exact gradient of the state.

    Parameter layout: ``W`` (4 * hidden, n_inputs + hidden + 1), gates input, forget,
    output, candidate; per row the inputs' weights, the recurrent weights, the bias.
    """

    def __init__(self, n_inputs: int, hidden: int, init_scale: float = 0.5, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.m, self.H = n_inputs, hidden
        self.W = rng.uniform(-init_scale, init_scale, size=(4 * hidden, n_inputs + hidden + 1))
        self.h, self.c = np.zeros(hidden), np.zeros(hidden)
        n = self.W.size
        self.TH, self.TC = np.zeros((hidden, n)), np.zeros((hidden, n))

    @property
    def n_parameters(self) -> int:
        return self.W.size

    def step(self, x: np.ndarray) -> np.ndarray:
        H, m = self.H, self.m
        z = np.concatenate([x, self.h, [1.0]])
        pre = self.W @ z
        i, f, o = (1.0 / (1.0 + np.exp(-pre[k * H:(k + 1) * H])) for k in range(3))
        g = np.tanh(pre[3 * H:])
        c = f * self.c + i * g
        tc = np.tanh(c)
        # d pre / d theta: the recurrent path through h(t-1), plus each row's own inputs
        dpre = self.W[:, m:m + H] @ self.TH                        # (4H, n)
        cols = z.size
        for row in range(4 * H):
            dpre[row, row * cols:(row + 1) * cols] += z
        di = dpre[:H] * (i * (1 - i))[:, None]
        df = dpre[H:2 * H] * (f * (1 - f))[:, None]
        do = dpre[2 * H:3 * H] * (o * (1 - o))[:, None]
        dg = dpre[3 * H:] * (1 - g * g)[:, None]
        self.TC = f[:, None] * self.TC + self.c[:, None] * df + i[:, None] * dg + g[:, None] * di
        self.TH = (o * (1 - tc * tc))[:, None] * self.TC + tc[:, None] * do
        self.h, self.c = o * tc, c
        return self.h
