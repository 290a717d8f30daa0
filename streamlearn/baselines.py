"""Baselines for the benchmarks: a dense LSTM learning TD(lambda) with truncated BPTT."""

from __future__ import annotations

import numpy as np

from streamlearn._tbptt import TruncatedLSTM

__all__ = ["TruncatedBPTTTD"]


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
