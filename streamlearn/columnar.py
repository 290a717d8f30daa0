"""ColumnarRegressor: a columnar LSTM network learning online with exact per-column RTRL."""

from __future__ import annotations

from river import base

from streamlearn.learner import ColumnarLearner, _flag, _number

__all__ = ["ColumnarRegressor"]


class ColumnarRegressor(ColumnarLearner, base.MiniBatchRegressor):
    """Columnar recurrent network trained online with exact real-time recurrent learning.

    ``n_columns`` LSTM cells with one scalar state each read the features; a linear head sums
    their states. Every recurrent parameter p of column i keeps the forward-mode traces
    TH = dh_i/dp and TC = dc_i/dp, updated each step in O(1), so a step costs O(n) for n
    parameters and the gradient -delta w_i TH of 1/2 (y - y_hat)^2 is exact: columns share
    no connections, so no other state depends on p.

    Each call to :meth:`learn_one`, :meth:`observe_one` advances the recurrent state by one
    step with ``x``: events are a sequence, and their order matters. :meth:`predict_one` is
    pure; it returns the prediction that ``learn_one(x, y)`` is scored on, and caches the
    forward step so that the following ``learn_one(x, y)`` does not compute it twice.

    Features are matched by name. A new feature gets input weights drawn from the seed and
    its name, so results do not depend on feature order; an absent feature reads as 0.

    Parameters
    ----------
    n_columns
        Number of columns (LSTM cells with a scalar hidden state).
    step_size
        Step size of every parameter update.
    optimizer
        ``"rmsprop"``: p -= step_size g / (sqrt(v) + 1e-8) with v <- 0.9999 v + 0.0001 g^2,
        v starting at 1 (Javed et al. 2023); ``"sgd"``: p -= step_size g.
    normalize
        Standardise each input and the target online (running mean and variance, exact for
        the first 10,000 values, then an exponential moving average with decay 0.9999); the
        head learns the standardised target and predictions are mapped back. ``False`` feeds
        raw inputs and learns the raw target.
    init_scale
        Recurrent parameters start U(-init_scale, init_scale); the head starts at 0.
    lateral_density
        Probability of each connection from another column's previous state h_j(t-1) into a
        column (its own weight per gate), drawn once from the seed. The gradient estimate
        keeps only each column's own path (O(n) still): exact at 0, approximate above
        (measure it with :mod:`streamlearn.diagnostics`).
    meta
        Meta-gradient mode (Javed et al. 2021, section 5): the head weights learn by LMS,
        w_i += head_step_size delta h_i (the bias stays), and the column parameters learn
        through that inner learning with a second trace TW = dw_i/dp, gradient
        -delta (w_i TH + h_i TW). Approximate even without lateral connections.
    head_step_size
        The LMS step size of the head in meta mode (unused otherwise).
    columns_per_stage
        Columns added per stage (Javed et al. 2023); ``None``: one stage of all columns (the
        plain columnar network). A column of stage s also reads the states of every column
        of earlier stages; only the newest stage learns, earlier ones are frozen.
    steps_per_stage
        Steps (learned or observed events) before the next stage is added.
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

    Attributes
    ----------
    feature_names
        Input features in the order of the parameter arrays.
    n_parameters
        Number of recurrent parameters, n_columns * 4 * (len(feature_names) + 2) plus four
        per lateral connection.

    Examples
    --------

    >>> from river import datasets, evaluate, metrics
    >>> from streamlearn import ColumnarRegressor

    >>> model = ColumnarRegressor(seed=42)
    >>> evaluate.progressive_val_score(datasets.TrumpApproval(), model, metrics.MAE())
    MAE: 0.345387

    References
    ----------
    K. Javed, M. White, R. S. Sutton (2021). Scalable Online Recurrent Learning Using Columnar
    Neural Networks. arXiv:2103.05787.

    """

    PARAMS = ("n_columns", "step_size", "optimizer", "normalize", "init_scale",
              "lateral_density", "meta", "head_step_size", "columns_per_stage",
              "steps_per_stage", "stage_lag", "dtype", "seed")

    def __init__(
        self,
        n_columns: int = 20,
        step_size: float = 0.05,
        optimizer: str = "rmsprop",
        normalize: bool = True,
        init_scale: float = 0.5,
        lateral_density: float = 0.0,
        meta: bool = False,
        head_step_size: float = 0.01,
        columns_per_stage: int | None = None,
        steps_per_stage: int = 100_000,
        stage_lag: int = 0,
        dtype: str = "float64",
        seed: int | None = None,
    ):
        self._init(locals())

    def _rule(self) -> str:
        return "meta" if _flag(self, "meta") else "regression"

    def _rule_config(self) -> dict:
        _flag(self, "meta")
        return {"head_step_size": _number(self, "head_step_size")}

    @classmethod
    def _unit_test_params(cls):
        yield {"n_columns": 4, "seed": 1}
        yield {"n_columns": 3, "optimizer": "sgd", "step_size": 0.001, "seed": 2}
        yield {"n_columns": 5, "normalize": False, "step_size": 0.001, "init_scale": 0.01}
        yield {"n_columns": 6, "lateral_density": 0.3, "seed": 3}
        yield {"n_columns": 4, "meta": True, "head_step_size": 0.05, "lateral_density": 0.5}
        yield {"n_columns": 6, "columns_per_stage": 2, "steps_per_stage": 40, "seed": 4}
        yield {"n_columns": 5, "dtype": "float32", "seed": 5}
