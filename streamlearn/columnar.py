"""ColumnarRegressor: a columnar LSTM network learning online with exact per-column RTRL."""

from __future__ import annotations

import random

from river import base

from streamlearn import serialization
from streamlearn._features import as_finite, equal, vectorize
from streamlearn.network import ColumnarNetwork, NetworkConfig

__all__ = ["ColumnarRegressor"]

FORMAT_VERSION = 1
PARAMS = ("n_columns", "step_size", "optimizer", "normalize", "init_scale", "lateral_density",
          "meta", "head_step_size", "seed")


class ColumnarRegressor(base.Regressor):
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
    MAE: 0.361396

    References
    ----------
    K. Javed, M. White, R. S. Sutton (2021). Scalable Online Recurrent Learning Using Columnar
    Neural Networks. arXiv:2103.05787.

    """

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
        seed: int | None = None,
    ):
        self.n_columns = n_columns
        self.step_size = step_size
        self.optimizer = optimizer
        self.normalize = normalize
        self.init_scale = init_scale
        self.lateral_density = lateral_density
        self.meta = meta
        self.head_step_size = head_step_size
        self.seed = seed
        self._net = ColumnarNetwork.new(self._config(seed if seed is not None
                                                     else random.getrandbits(63)))
        self._cache = None  # (network, input vector, prediction) of the pending forward step

    def _config(self, seed: int) -> NetworkConfig:
        """Validated configuration; ``seed`` is the resolved integer seed."""
        if isinstance(self.n_columns, bool) or not isinstance(self.n_columns, int) \
                or self.n_columns < 1:
            raise ValueError(f"n_columns must be a positive int, got {self.n_columns!r}")
        for name in ("step_size", "init_scale", "head_step_size", "lateral_density"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not self.lateral_density <= 1:
            raise ValueError(f"lateral_density must be in [0, 1], got {self.lateral_density!r}")
        if self.optimizer not in ("sgd", "rmsprop"):
            raise ValueError(f"optimizer must be 'sgd' or 'rmsprop', got {self.optimizer!r}")
        for name in ("normalize", "meta"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be None or an int in [0, 2**63), got {seed!r}")
        return NetworkConfig(n_columns=self.n_columns, seed=seed,
                             step_size=float(self.step_size), optimizer=self.optimizer,
                             normalize=self.normalize, init_scale=float(self.init_scale),
                             lateral_density=float(self.lateral_density), meta=self.meta,
                             head_step_size=float(self.head_step_size))

    @classmethod
    def _unit_test_params(cls):
        yield {"n_columns": 4, "seed": 1}
        yield {"n_columns": 3, "optimizer": "sgd", "step_size": 0.001, "seed": 2}
        yield {"n_columns": 5, "normalize": False, "step_size": 0.001, "init_scale": 0.01}
        yield {"n_columns": 6, "lateral_density": 0.3, "seed": 3}
        yield {"n_columns": 4, "meta": True, "head_step_size": 0.05, "lateral_density": 0.5}

    # ---- learning -------------------------------------------------------------------------

    def _forward(self, x: dict):
        """The network that steps on ``x`` (grown if x has new features) with its forward
        step pending, and the prediction. Reuses the cached step of a matching predict_one."""
        if not isinstance(x, dict):
            raise TypeError(f"x must be a dict of feature values, got {type(x).__name__}")
        if self._cache is not None:
            net, vec, y_pred = self._cache
            if vectorize(x, net.index, net.x) is None and equal(net.x, vec):
                return net, y_pred
        net = self._net
        new = vectorize(x, net.index, net.x)
        if new:
            net = net.grow(new)
            vectorize(x, net.index, net.x)
        self._cache = None
        y_pred = net.kernel.forward(net.x)
        self._cache = (net, net.x.copy(), y_pred)
        return net, y_pred

    def predict_one(self, x: dict) -> float:
        """Prediction for the state after x; changes nothing."""
        return self._forward(x)[1]

    def learn_one(self, x: dict, y: float) -> None:
        """Advance the state with x, then take a gradient step on 1/2 (y - prediction)^2."""
        target = as_finite("y", y)
        net, _ = self._forward(x)
        net.kernel.commit(target, True)
        self._net, self._cache = net, None

    def observe_one(self, x: dict) -> float:
        """Advance the state with an unlabelled x (traces too); return its prediction."""
        net, y_pred = self._forward(x)
        net.kernel.commit(0.0, False)
        self._net, self._cache = net, None
        return y_pred

    def add_features(self, names) -> None:
        """Register features ahead of their first event (in the given order; known names are
        skipped). Neutral for predictions: a feature that has not been seen reads as 0."""
        if not isinstance(names, (list, tuple)):
            raise TypeError("names must be a list or tuple of feature names")
        new = list(dict.fromkeys(n for n in names if n not in self._net.index))
        if new:
            self._net, self._cache = self._net.grow(new), None

    def reset_state(self) -> None:
        """Start a new sequence: column states and traces back to 0; parameters are kept."""
        self._net.reset_state()
        self._cache = None

    # ---- introspection --------------------------------------------------------------------

    @property
    def feature_names(self) -> list:
        return list(self._net.names)

    @property
    def n_parameters(self) -> int:
        return self.n_columns * 4 * (self._net.n_inputs + 2) + self._net.arrays["LP"].size

    # ---- state ----------------------------------------------------------------------------

    def _params(self) -> dict:
        """The constructor arguments (what River's _get_params gives, without inspect)."""
        return {name: getattr(self, name) for name in PARAMS}

    def state_dict(self) -> dict:
        """The full learned state as plain data (numpy arrays, numbers, strings, lists)."""
        return self._state(copy=True)

    def _state(self, copy: bool) -> dict:
        state = {"format_version": FORMAT_VERSION, "class": type(self).__name__,
                 "params": self._params(), "seed": self._net.config.seed}
        state.update(self._net.state(copy=copy))
        return state

    def load_state_dict(self, state: dict) -> None:
        """Replace the learned state with ``state`` (from :meth:`state_dict` of a learner with
        the same parameters); afterwards every step is bit-identical to the saved learner's."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported state format_version {state.get('format_version')!r}"
                             f" (this version reads {FORMAT_VERSION})")
        if state.get("class") != type(self).__name__:
            raise ValueError(f"state is of a {state.get('class')!r}, not a {type(self).__name__}")
        if state.get("params") != self._params():
            raise ValueError(f"state was saved with params {state.get('params')!r}, this learner "
                             f"has {self._params()!r}")
        self._net = ColumnarNetwork.from_state(self._config(state.get("seed")), state)
        self._cache = None

    @classmethod
    def from_state_dict(cls, state: dict) -> "ColumnarRegressor":
        """A learner built from the parameters in ``state`` with the state loaded."""
        params = state.get("params") if isinstance(state, dict) else None
        if not isinstance(params, dict):
            raise ValueError("state has no 'params' dict")
        model = cls(**params)
        model.load_state_dict(state)
        return model

    def to_bytes(self) -> bytes:
        """Deterministic, versioned bytes of :meth:`state_dict` (no pickle)."""
        for name in self._net.names:
            if isinstance(name, bool) or not isinstance(name, (str, int)):
                raise TypeError(f"feature name {name!r} cannot be serialised: to_bytes() needs "
                                "str or int feature names")
        return serialization.pack(self._state(copy=False))

    @classmethod
    def from_bytes(cls, data: bytes) -> "ColumnarRegressor":
        """Inverse of :meth:`to_bytes`."""
        state = serialization.unpack(data)
        if state.get("class") != cls.__name__:
            raise ValueError(f"bytes hold a {state.get('class')!r}, not a {cls.__name__}")
        return cls.from_state_dict(state)

    def __reduce__(self):
        return type(self).from_state_dict, (self.state_dict(),)
