"""What every columnar learner shares: configuration checks, the cached forward step,
stages, the state dict, bytes and pickling. Subclasses add ``learn_one`` and their params."""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import random

import numpy as np

from streamlearn import serialization
from streamlearn._columnar import raise_for_status
from streamlearn._features import MAX_VALUE
from streamlearn._learner_core import LearnerCore
from streamlearn.network import ColumnarNetwork, NetworkConfig, n_logits
from streamlearn.serialization import SerializationError

__all__ = ["ColumnarLearner"]

FORMAT_VERSION = 1


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _number(owner, name: str, low: float = 0.0, high: float = math.inf,
            high_inclusive: bool = False) -> float:
    """A real hyper-parameter: Python's or numpy's (a grid built with numpy), not a bool."""
    value = getattr(owner, name)
    if _is_bool(value) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < low or value > high \
            or (value == high and not high_inclusive):
        bound = f"[{low}, {high}{']' if high_inclusive else ')'}"
        raise ValueError(f"{name} must be a number in {bound}, got {value!r}")
    return float(value)


def _integer(owner, name: str, low: int = 1) -> int:
    """An integer hyper-parameter: Python's or numpy's, not a bool."""
    value = getattr(owner, name)
    if _is_bool(value) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _flag(owner, name: str) -> bool:
    value = getattr(owner, name)
    if not _is_bool(value):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _dtype(value) -> str:
    """"float64" or "float32" from any spelling numpy takes (np.float32, "f4", ...)."""
    try:
        name = np.dtype(value).name
    except TypeError:
        name = None
    if name not in ("float64", "float32") or _is_bool(value) or value is None:
        raise ValueError(f"dtype must be 'float64' or 'float32', got {value!r}")
    return name


def _plain(value):
    """A hyper-parameter as plain data for the state dict: numpy scalars as Python numbers,
    dtypes by name."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (type, np.dtype)):
        return _dtype(value)
    return value


class ColumnarLearner(LearnerCore):
    """Base of the columnar learners. ``PARAMS`` lists the constructor arguments; each
    subclass's ``__init__`` passes them to ``_init``, which stores them verbatim. The per-step
    path (predict_one, learn_one, _step) is LearnerCore's, in C."""

    PARAMS: tuple = ()

    def _init(self, arguments: dict) -> None:
        """The constructor's work: store each of ``PARAMS`` from ``arguments`` (its
        ``locals()``) verbatim, as River expects, then build the network."""
        for name in self.PARAMS:
            setattr(self, name, arguments[name])
        self._setup()

    def _setup(self) -> None:
        seed = self.seed if self.seed is not None else random.getrandbits(63)
        self._adopt(ColumnarNetwork.new(self._config(seed)), 0)

    def _on(self, net: ColumnarNetwork, steps: int = 0):
        """A learner with this one's parameters holding ``net`` (not validated again)."""
        new = type(self).__new__(type(self))
        for name in self.PARAMS:
            setattr(new, name, getattr(self, name))
        new._adopt(net, steps)
        return new

    def spawn(self, seed: int):
        """A fresh learner with this one's parameters and another ``seed``: what
        ``clone({"seed": seed})`` gives, without re-validating the parameters (a service
        creates one per new key)."""
        if _is_bool(seed) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}")
        new = self._on(ColumnarNetwork.new(dataclasses.replace(self._net.config, seed=int(seed))))
        new.seed = seed
        return new

    def clone(self, new_params: dict | None = None, include_attributes: bool = False):
        """River's clone; with ``include_attributes`` the clone also holds this learner's
        learned state (River copies ``__dict__``, and the state lives in the compiled core),
        which needs ``new_params`` that keep its shapes (SerializationError otherwise)."""
        clone = super().clone(new_params)
        if include_attributes:
            clone.load_state_dict(dict(self.state_dict(), params=clone._params()))
            for name, value in self.__dict__.items():  # what subclasses keep (td_error)
                if name not in self.PARAMS and name != "_packer":  # _packer: a cache
                    setattr(clone, name, copy.deepcopy(value))
        return clone

    def _copy(self):
        """An independent copy of this learner, state included (cheaper than clone)."""
        return self._on(self._net.copy(), self._steps)

    def _adopt(self, net: ColumnarNetwork, steps: int) -> None:
        """Make ``net`` the learner's network, ``steps`` steps into the stream."""
        self._hold(net, steps, self.steps_per_stage)

    def _rule(self) -> str:
        """The kernel's learning rule: "regression", "meta" or "td"."""
        return "regression"

    def _rule_config(self) -> dict:
        """Rule-specific NetworkConfig fields, validated (subclasses extend)."""
        return {}

    def _config(self, seed: int) -> NetworkConfig:
        """Validated configuration; ``seed`` is the resolved integer seed."""
        n_columns = _integer(self, "n_columns")
        if not isinstance(self.optimizer, str) or self.optimizer not in ("sgd", "rmsprop"):
            raise ValueError(f"optimizer must be 'sgd' or 'rmsprop', got {self.optimizer!r}")
        if _is_bool(seed) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be None or an int in [0, 2**63), got {seed!r}")
        per_stage = 0
        if self.columns_per_stage is not None:
            per_stage = _integer(self, "columns_per_stage")
            if n_columns % per_stage:
                raise ValueError(f"columns_per_stage ({per_stage}) must divide n_columns "
                                 f"({n_columns})")
        _integer(self, "steps_per_stage")
        stage_lag = _integer(self, "stage_lag", low=0)
        if stage_lag > 1:
            raise ValueError(f"stage_lag must be 0 or 1, got {stage_lag!r}")
        return NetworkConfig(
            n_columns=n_columns, seed=int(seed), step_size=_number(self, "step_size"),
            optimizer=str(self.optimizer), normalize=_flag(self, "normalize"),
            init_scale=_number(self, "init_scale"),
            lateral_density=_number(self, "lateral_density", high=1.0, high_inclusive=True),
            columns_per_stage=per_stage, stage_lag=stage_lag, rule=self._rule(),
            dtype=_dtype(self.dtype), **self._rule_config())

    # ---- stepping (the single steps are LearnerCore's) ----------------------------------------

    def observe_one(self, x: dict) -> float:
        """Advance the state with an unlabelled x (traces too); return its prediction."""
        return self._step(x, 0.0, False)[0]

    def add_features(self, names) -> None:
        """Register features ahead of their first event (in the given order; known names are
        skipped). Neutral for predictions: a feature that has not been seen reads as 0."""
        if not isinstance(names, (list, tuple)):
            raise TypeError("names must be a list or tuple of feature names")
        new = list(dict.fromkeys(n for n in names if n not in self._net.index))
        if new:
            self._net = self._net.grow(new)

    # ---- chunks -----------------------------------------------------------------------------

    def _matrix(self, X, feature_names) -> tuple:
        """(names, float64 matrix) of a chunk: a DataFrame, or a 2-D array and its names."""
        if hasattr(X, "columns") and hasattr(X, "to_numpy"):
            names = list(X.columns)
            data = X.to_numpy()
        else:
            if feature_names is None:
                raise TypeError("a 2-D array needs feature_names (or pass a pandas DataFrame)")
            names, data = list(feature_names), np.asarray(X)
        if data.ndim != 2 or data.shape[1] != len(names):
            raise ValueError(f"X must be 2-D with one column per feature name; got shape "
                             f"{data.shape} for {len(names)} names")
        if len(set(names)) != len(names):
            raise ValueError("feature names of a chunk must be unique")
        if data.dtype.kind not in "biuf":
            raise TypeError(f"X must hold numbers, got dtype {data.dtype}")
        data = data.astype(np.float64)
        if not np.all(np.isfinite(data)):
            raise ValueError("X holds NaN or infinite values (absent features: leave the column "
                             "out, it reads as 0)")
        if np.any(np.abs(data) > MAX_VALUE):
            raise ValueError(f"X holds values out of range (beyond +-{MAX_VALUE:g})")
        return names, data

    def _dense(self, net, names, data) -> np.ndarray:
        out = np.zeros((data.shape[0], net.n_inputs))
        out[:, [net.index[name] for name in names]] = data
        return out

    def _learn_rows(self, X, y, feature_names, learn: bool) -> np.ndarray:
        """Apply consecutive rows as steps; returns the prequential predictions."""
        names, data = self._matrix(X, feature_names)
        # contiguous: a DataFrame's column can be a strided view of its 2-D block
        targets = np.ascontiguousarray(np.asarray(y, dtype=np.float64).reshape(-1)) if learn \
            else np.zeros(data.shape[0])
        if targets.shape[0] != data.shape[0]:
            raise ValueError(f"y has {targets.shape[0]} values for {data.shape[0]} rows")
        if not np.all(np.isfinite(targets)):
            raise ValueError("y holds NaN or infinite values")
        if np.any(np.abs(targets) > MAX_VALUE):
            raise ValueError(f"y holds values out of range (beyond +-{MAX_VALUE:g})")
        return self._apply_rows(names, data, targets, learn)

    def _apply_rows(self, names, data, targets, learn: bool) -> np.ndarray:
        """Steps for the validated rows ``data`` (columns: the features ``names``) with
        ``targets``; returns the prequential predictions."""
        self.add_features(names)
        net = self._net
        dense = self._dense(net, names, data)
        out = np.empty(data.shape[0])
        start = 0
        while start < len(dense):  # split at stage boundaries
            stop = len(dense)
            if net.config.columns_per_stage:
                stop = min(stop, start + self.steps_per_stage - self._steps % self.steps_per_stage)
            applied, status, delta = net.kernel.run_rows(dense[start:stop], targets[start:stop],
                                                         learn, out[start:stop])
            self._stepped(net, applied)
            if status:
                try:
                    raise_for_status(status, delta)
                except FloatingPointError as exc:
                    raise FloatingPointError(f"row {start + applied}: {exc}; the "
                                             f"{start + applied} rows before it were applied") \
                        from None
            start = stop
        return out

    def learn_many(self, X, y, feature_names=None) -> np.ndarray:
        """``learn_one`` for each row of an ordered chunk of the stream, in one compiled call;
        returns the prediction each row was scored on (what predict_one gave before it).

        ``X`` is a DataFrame (columns are features) or a 2-D array with ``feature_names``;
        columns absent from the chunk read as 0. Validated whole before any step; if a step
        diverges the rows before it stay applied and the error says how many.
        """
        return self._learn_rows(X, y, feature_names, True)

    def predict_many(self, X, feature_names=None):
        """The prediction for each row from the current state, as predict_one would give it
        (nothing changes). ``X``: a DataFrame, or a 2-D array with ``feature_names``."""
        out, _ = self._predict_rows(X, feature_names, False)
        if hasattr(X, "index"):
            import pandas as pd

            return pd.Series(out, index=X.index)
        return out

    def _predict_rows(self, X, feature_names, probabilities: bool) -> tuple:
        """(the prediction of each row from the current state, and with ``probabilities``
        the classification head's probabilities (rows, logits), else None)."""
        names, data = self._matrix(X, feature_names)
        net = self._net
        new = [name for name in names if name not in net.index]
        if new:
            net = net.grow(list(dict.fromkeys(new)))
        out = np.empty(data.shape[0])
        probs = np.empty((data.shape[0], n_logits(len(net.classes)))) if probabilities \
            else None
        net.kernel.predict_rows(self._dense(net, names, data), out, probs)
        return out, probs

    # ---- introspection ----------------------------------------------------------------------

    @property
    def feature_names(self) -> list:
        return list(self._net.names)

    @property
    def n_features(self) -> int:
        return len(self._net.names)

    @property
    def n_parameters(self) -> int:
        a = self._net.arrays
        return a["P"].size + a["LP"].size + a["SP"].size

    @property
    def stage(self) -> int:
        """Index of the stage that is learning now."""
        return min(self._steps // self.steps_per_stage, self._net.config.n_stages - 1)

    # ---- state ------------------------------------------------------------------------------

    def _params(self) -> dict:
        """The constructor arguments (what River's _get_params gives, without inspect)."""
        return {name: getattr(self, name) for name in self.PARAMS}

    def state_dict(self) -> dict:
        """The full learned state as plain data (numpy arrays, numbers, strings, lists)."""
        return self._state(copy=True)

    def _state(self, copy: bool) -> dict:
        params = {name: _plain(value) for name, value in self._params().items()}
        state = {"format_version": FORMAT_VERSION, "class": type(self).__name__,
                 "params": params, "seed": self._net.config.seed, "steps": self._steps}
        state.update(self._net.state(copy=copy))
        return state

    def load_state_dict(self, state: dict) -> None:
        """Replace the learned state with ``state`` (from :meth:`state_dict` of a learner with
        the same parameters); afterwards every step is bit-identical to the saved learner's.

        Everything is checked before anything changes (see ``ColumnarNetwork.from_state``);
        a state that does not fit raises :class:`SerializationError` (a ValueError) naming
        the entry, and the learner keeps its state."""
        if not isinstance(state, dict):
            raise SerializationError(f"state must be a dict, got {type(state).__name__}")
        version = state.get("format_version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise SerializationError(f"unsupported state format_version {version!r:.60} "
                                     f"(this version reads {FORMAT_VERSION})")
        if state.get("class") != type(self).__name__:
            raise SerializationError(f"state entry 'class' is {state.get('class')!r:.60}, not "
                                     f"{type(self).__name__!r}")
        saved = self._saved_params(state)
        mine = {name: _plain(value) for name, value in self._params().items()}
        if saved != mine:
            raise SerializationError(f"state was saved with params {saved!r:.400}, this "
                                     f"learner has {mine!r:.400}")
        steps = state.get("steps", 0)
        if type(steps) is not int or not 0 <= steps < 2**62:
            raise SerializationError(f"state entry 'steps' must be an int in [0, 2**62), got "
                                     f"{steps!r:.60}")
        try:
            config = self._config(state.get("seed"))
        except ValueError as exc:
            raise SerializationError(f"state entry 'seed' or 'params': {exc}") from None
        self._adopt(ColumnarNetwork.from_state(config, state, self.steps_per_stage), steps)

    @classmethod
    def _saved_params(cls, state: dict) -> dict:
        """The ``params`` entry of a state: exactly this class's constructor arguments."""
        saved = state.get("params")
        if not isinstance(saved, dict):
            raise SerializationError("state entry 'params' must be a dict")
        saved = dict({"dtype": "float64", "stage_lag": 0}, **saved)  # saved before they existed
        if set(saved) != set(cls.PARAMS):
            raise SerializationError(
                f"state entry 'params' does not list the arguments of {cls.__name__}: missing "
                f"{sorted(set(cls.PARAMS) - set(saved))}, unknown "
                f"{sorted(map(str, set(saved) - set(cls.PARAMS)))[:10]}")
        return saved

    @classmethod
    def from_state_dict(cls, state: dict):
        """A learner built from the parameters in ``state`` with the state loaded.

        The learner is built from the state's own arrays, checked first: a state costs the
        memory of its arrays, whatever sizes its parameters claim."""
        if not isinstance(state, dict):
            raise SerializationError(f"state must be a dict, got {type(state).__name__}")
        model = cls.__new__(cls)
        for name, value in cls._saved_params(state).items():
            setattr(model, name, value)  # verbatim, as __init__ stores them
        model.load_state_dict(state)
        return model

    def to_bytes(self) -> bytes:
        """Deterministic, versioned bytes of :meth:`state_dict` (no pickle). The header is
        encoded once per network (a PackTemplate: only the step count and the scalars
        change between calls), so a service writing thousands of learners per checkpoint
        spends its time copying their arrays, not encoding JSON."""
        net = self._net
        cached = self.__dict__.get("_packer")
        if cached is None or cached[0] is not net:
            for name in net.names:
                if isinstance(name, bool) or not isinstance(name, (str, int)):
                    raise TypeError(f"feature name {name!r} cannot be serialised: to_bytes() "
                                    "needs str or int feature names")
            paths = net.scalar_paths()
            cached = (net, serialization.PackTemplate(
                self._state(copy=False), ("steps",) + tuple(p for p, _ in paths)),
                [i for _, i in paths])
            self._packer = cached
        scalars = net.arrays["scalars"]
        return cached[1].pack([self._steps, *[float(scalars[i]) for i in cached[2]]])

    @classmethod
    def from_bytes(cls, data: bytes):
        """Inverse of :meth:`to_bytes`. Anything wrong with ``data`` raises
        :class:`SerializationError` (a ValueError) naming what is wrong; a hostile blob
        costs no more memory than a few times its own length."""
        state = serialization.unpack(data)
        if state.get("class") != cls.__name__:
            raise SerializationError(f"state entry 'class' is {state.get('class')!r:.60}, not "
                                     f"{cls.__name__!r}")
        return cls.from_state_dict(state)

    def __reduce__(self):
        """Pickle (River's clone, a Flink job's state) through :meth:`to_bytes`: the
        unpickler gets one bytes object that :meth:`from_bytes` checks, never the
        internals."""
        return type(self).from_bytes, (self.to_bytes(),)
