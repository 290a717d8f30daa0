"""ColumnarTD: TD(lambda) prediction with columnar (and columnar-constructive) networks."""

from __future__ import annotations

import math

from river import base

from streamlearn.learner import ColumnarLearner, _number

__all__ = ["ColumnarTD"]


class ColumnarTD(ColumnarLearner, base.Estimator):
    """Online TD(lambda) prediction of the discounted sum of a signal (Javed et al. 2023).

    The value V(S_t) = w . h_t + b of the columns' states predicts the return
    G_t = C_{t+1} + gamma C_{t+2} + gamma^2 C_{t+3} + ... of a cumulant C. Each call
    ``learn_one(x, c)`` brings the input x_{t+1} and the cumulant c = C_{t+1} observed with
    it; the learner advances to S_{t+1}, computes
    delta_t = C_{t+1} + gamma V(S_{t+1}) - V(S_t) with the parameters that made both values,
    steps every parameter by its eligibility, p += step_size delta e / (sqrt(v) + 1e-8) with
    v <- 0.9999 v + 0.0001 (delta e)^2 (v starts at 1; the head's step is divided by the
    number of columns in use), then accumulates e <- gamma lambda e + dV(S_{t+1})/dp. The
    per-column RTRL traces give dV/dp = w_i dh_i/dp exactly, at O(n) per step.

    Stages make it columnar-constructive: ``columns_per_stage`` columns learn for
    ``steps_per_stage`` steps, then freeze and the next stage, which also reads their states,
    starts learning (one column per stage: constructive; all columns in one stage, the
    default: columnar).

    Parameters
    ----------
    n_columns
        Number of columns.
    step_size
        Step size of every parameter (the head's divided by the number of columns in use).
    gamma
        Discount of the return.
    lambda_
        Trace decay of the eligibility traces.
    optimizer
        ``"rmsprop"`` (the paper's normalised step) or ``"sgd"`` (p += step_size delta e).
    normalize
        Standardise each input online (running mean and variance, decay ``norm_decay``,
        variance floored at ``var_floor``) and the states that frozen columns feed later
        stages (their statistics freeze with them). On by default: on trace patterning it
        learned sooner than raw inputs (MSRE at 2M steps averaged over held-out seeds 10-14:
        0.0045 against 0.0054; benchmarks/README.md).
    var_floor
        Floor of the variances used to standardise.
    norm_decay
        Decay of the running mean and variance (exact averages for the first
        1 / (1 - norm_decay) steps, then exponential).
    init_scale
        Recurrent parameters start U(-init_scale, init_scale); the head starts at 0.
    forget_bias
        Added to every forget-gate bias at initialisation (the usual LSTM practice: Gers et
        al. 2000, Jozefowicz et al. 2015): columns start by keeping about 3/4 of their cell
        state per step instead of half, so a stimulus is remembered long enough for its
        gradient to be seen. On trace patterning, held-out seeds 10-19 reached a mean MSRE
        of 0.0034 at 2M steps with 1.0 against 0.0047 with 0 (benchmarks/README.md).
    lateral_density
        Random sparse connections between columns of a stage (approximate gradient).
    columns_per_stage
        Columns per stage; ``None``: one stage (columnar).
    steps_per_stage
        Steps before the next stage is added.
    stage_lag
        0: a stage reads the earlier stages' states of the same step; 1: their states of the
        step before, so that k stages reach k steps further back (a delay line). Either way
        what it reads is frozen, and the gradient stays exact.
    dtype
        ``"float64"`` or ``"float32"``: the type of the columns' own parameters, their traces
        and optimiser moments, and of their arithmetic in the learning step (half the memory
        and traffic per parameter, vector loops twice as wide); states, the head,
        pre-activations, lateral and stage weights stay float64. float32 traces follow the
        float64 ones to float32 accuracy (about 1e-6 relative per step).
    seed
        Seed of the initial parameters; ``None`` draws one.

    Examples
    --------

    >>> from streamlearn import ColumnarTD
    >>> from streamlearn.datasets import TracePatterning
    >>> stream = TracePatterning(seed=0)
    >>> model = ColumnarTD(seed=0)
    >>> errors = []
    >>> for t, (x, cumulant, true_return) in zip(range(1000), stream):
    ...     value = model.predict_one(x)  # V(S_t): the state x leads to (pure, cached)
    ...     model.learn_one(x, cumulant)  # the same step, learning from the cumulant
    ...     errors.append((value - true_return) ** 2)
    >>> 0 <= sum(errors) / len(errors) < 0.05
    True

    """

    PARAMS = ("n_columns", "step_size", "gamma", "lambda_", "optimizer", "normalize",
              "var_floor", "norm_decay", "init_scale", "forget_bias", "lateral_density",
              "columns_per_stage", "steps_per_stage", "stage_lag", "dtype", "seed")

    def __init__(
        self,
        n_columns: int = 20,
        step_size: float = 0.001,
        gamma: float = 0.9,
        lambda_: float = 0.99,
        optimizer: str = "rmsprop",
        normalize: bool = True,
        var_floor: float = 0.1,
        norm_decay: float = 0.99999,
        init_scale: float = 0.01,
        forget_bias: float = 1.0,
        lateral_density: float = 0.0,
        columns_per_stage: int | None = None,
        steps_per_stage: int = 1_000_000,
        stage_lag: int = 0,
        dtype: str = "float64",
        seed: int | None = None,
    ):
        self._init(locals())

    def _rule(self) -> str:
        return "td"

    def _rule_config(self) -> dict:
        return {"gamma": _number(self, "gamma", high=1.0),
                "lambda_": _number(self, "lambda_", high=1.0, high_inclusive=True),
                "var_floor": _number(self, "var_floor"),
                "decay": _number(self, "norm_decay", high=1.0),
                "forget_bias": _number(self, "forget_bias", low=-math.inf)}

    @classmethod
    def _unit_test_params(cls):
        yield {"n_columns": 4, "seed": 1}
        yield {"n_columns": 4, "columns_per_stage": 1, "steps_per_stage": 10, "seed": 2,
               "normalize": True}
        yield {"n_columns": 4, "dtype": "float32", "seed": 3}

    def _adopt(self, net, steps: int) -> None:
        super()._adopt(net, steps)
        self._td_error = None

    @property
    def _supervised(self) -> bool:
        return True

    def learn_one(self, x: dict, y: float, w: float = 1.0) -> None:
        """Advance to the state of x, observing the cumulant ``y`` that came with it, and
        learn from the TD error of the previous state's value (the step scaled by the sample
        weight w >= 0)."""
        _, self._td_error = self._step(x, y, True, w)

    @property
    def td_error(self) -> float | None:
        """The TD error of the last learn_one (None at an episode's first step)."""
        return self._td_error

    def reset_state(self) -> None:
        """End the episode: no TD error crosses the boundary (gamma is 0 there); states,
        traces and eligibilities restart at 0."""
        super().reset_state()
        self._td_error = None
