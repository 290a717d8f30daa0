"""ColumnarClassifier: columns learning online with exact per-column RTRL, under a logistic
(two classes) or softmax (more) head."""

from __future__ import annotations

import math

import numpy as np
from river import base

from streamlearn.learner import ColumnarLearner, _number
from streamlearn.network import MAX_CLASSES, class_label

__all__ = ["ColumnarClassifier"]


class ColumnarClassifier(ColumnarLearner, base.MiniBatchClassifier):
    """Columnar recurrent network classifying online, binary or multiclass.

    The columns are those of :class:`~streamlearn.ColumnarRegressor`; the head maps their
    states h to class probabilities: p = logistic(w . h + b) of the second class while at
    most two classes have been seen, softmax(W h + b) over the classes once a third appears.
    The loss is the log loss -log p_y, whose gradient with respect to the logits is p - t
    (t one-hot), so -dL/dh_i = sum_l (t_l - p_l) W_li and each column parameter's gradient
    is that times its trace dh_i/dp: exact, as for the regressor.

    Classes are labels (str, int, bool or float) in the order they first appear. A new class
    enlarges the head without touching the columns: their traces dh_i/dp do not depend on
    the head, so they stay exact. At the third class the one logit z becomes the second
    class's and the first class's logit is 0 (logistic(z) = softmax(0, z)); a new class's
    logit starts at 0.

    Each :meth:`learn_one` advances the recurrent state by one step with ``x``: events are a
    sequence and their order matters. :meth:`predict_proba_one` is pure and caches its
    forward step for the following ``learn_one`` with the same x. Inputs are standardised
    online (``normalize``): no scaler is needed in front.

    Parameters
    ----------
    n_columns
        Number of columns (LSTM cells with a scalar hidden state).
    step_size
        Step size of every parameter update. Larger than the regressor's: the log loss's
        gradients are at most 1 in size, where the regressor's standardised errors are not.
    optimizer
        ``"rmsprop"`` (second moments start at 1) or ``"sgd"``.
    normalize
        Standardise each input online (as the regressor does; the label is not scaled).
    init_scale
        Recurrent parameters start U(-init_scale, init_scale); the head starts at 0.
    forget_bias
        Added to every forget gate's initial bias. Negative by default: a column then starts
        out forgetting fast, its state following the current input (the events of most
        classification streams are close to independent), and learns longer memory where
        the stream rewards it.
    lateral_density
        Probability of a connection from another column's previous state (approximate
        gradient above 0; see :class:`~streamlearn.ColumnarRegressor`).
    columns_per_stage
        Columns per constructive stage; ``None``: one stage of all columns.
    steps_per_stage
        Steps before the next stage is added.
    stage_lag
        0: a stage reads the earlier stages' states of the same step; 1: their states of the
        step before, so that k stages reach k steps further back (a delay line). Either way
        what it reads is frozen, and the gradient stays exact.
    dtype
        ``"float64"`` or ``"float32"`` for the columns' own parameters and traces.
    seed
        Seed of the initial parameters; ``None`` draws one.

    Examples
    --------

    >>> from river import datasets, evaluate, metrics
    >>> from streamlearn import ColumnarClassifier

    >>> model = ColumnarClassifier(seed=42)
    >>> evaluate.progressive_val_score(datasets.Phishing(), model, metrics.Accuracy())
    Accuracy: 89.51%

    """

    PARAMS = ("n_columns", "step_size", "optimizer", "normalize", "init_scale", "forget_bias",
              "lateral_density", "columns_per_stage", "steps_per_stage", "stage_lag", "dtype",
              "seed")

    def __init__(
        self,
        n_columns: int = 30,
        step_size: float = 0.3,
        optimizer: str = "rmsprop",
        normalize: bool = True,
        init_scale: float = 0.5,
        forget_bias: float = -2.0,
        lateral_density: float = 0.0,
        columns_per_stage: int | None = None,
        steps_per_stage: int = 100_000,
        stage_lag: int = 0,
        dtype: str = "float64",
        seed: int | None = None,
    ):
        self._init(locals())

    def _rule(self) -> str:
        return "classification"

    def _rule_config(self) -> dict:
        return {"forget_bias": _number(self, "forget_bias", low=-math.inf)}

    @classmethod
    def _unit_test_params(cls):
        yield {"n_columns": 4, "seed": 1}
        yield {"n_columns": 3, "optimizer": "sgd", "step_size": 0.01, "seed": 2}
        yield {"n_columns": 6, "lateral_density": 0.3, "seed": 3}
        yield {"n_columns": 6, "columns_per_stage": 2, "steps_per_stage": 40, "seed": 4}
        yield {"n_columns": 5, "dtype": "float32", "seed": 5}

    @property
    def _multiclass(self) -> bool:
        return True

    @property
    def classes(self) -> list:
        """The class labels seen, in the order they first appeared."""
        return list(self._net.classes)

    # ---- one event --------------------------------------------------------------------------

    def learn_one(self, x: dict, y, w: float = 1.0) -> None:
        """Advance the state with x, then take a gradient step on the log loss of class y,
        scaled by the sample weight w >= 0."""
        index = self._known_class(y)
        if index is not None:
            self._step(x, index, True, w)
            return
        before = self._net
        self._net = before.with_class(self._new_label(y))
        try:
            self._step(x, len(before.classes), True, w)
        except BaseException:
            self._net = before  # a refused step adds no class
            raise

    def predict_proba_one(self, x: dict) -> dict:
        """The probability of each class seen for the state after x; changes nothing."""
        net = self._pending(x)
        return self._probabilities(net.classes, net.kernel.probabilities()[None, :])[0]

    def predict_one(self, x: dict):
        """The most probable class for the state after x (None before any class)."""
        proba = self.predict_proba_one(x)
        return max(proba, key=proba.get) if proba else None

    # ---- chunks -----------------------------------------------------------------------------

    def learn_many(self, X, y, feature_names=None) -> None:
        """``learn_one`` for each row of an ordered chunk, in compiled calls (split where a
        new class appears). ``X``: a DataFrame, or a 2-D array with ``feature_names``.
        Validated whole before any step."""
        names, data = self._matrix(X, feature_names)
        labels = list(y)
        if len(labels) != data.shape[0]:
            raise ValueError(f"y has {len(labels)} labels for {data.shape[0]} rows")
        known = dict(self._net.class_index)
        for label in labels:
            if self._known_class(label, known) is None:
                known[self._new_label(label, len(known))] = len(known)
        start, targets = 0, np.array([known[label] for label in labels], dtype=np.float64)
        for row, target in enumerate(targets):
            if target == len(self._net.classes):  # a new class: steps so far, then grow
                self._apply_rows(names, data[start:row], targets[start:row], True)
                self._net = self._net.with_class(class_label(labels[row]))
                start = row
        self._apply_rows(names, data[start:], targets[start:], True)

    def predict_proba_many(self, X, feature_names=None):
        """The probabilities of each row from the current state (nothing changes): a
        DataFrame with one column per class for a DataFrame X, else a list of dicts."""
        _, probs = self._predict_rows(X, feature_names, True)
        rows = self._probabilities(self._net.classes, probs)
        if hasattr(X, "index"):
            import pandas as pd

            return pd.DataFrame(rows, index=X.index, columns=list(self._net.classes))
        return rows

    def predict_many(self, X, feature_names=None):
        """The most probable class of each row (a Series for a DataFrame X)."""
        rows = self.predict_proba_many(X, feature_names)
        if hasattr(rows, "idxmax"):
            import pandas as pd

            if not len(rows.columns):
                return pd.Series([None] * len(rows), index=rows.index, dtype=object)
            return rows.idxmax(axis=1)
        return [max(p, key=p.get) if p else None for p in rows]

    # ---- labels -----------------------------------------------------------------------------

    def _known_class(self, y, index=None):
        """y's class index, or None for a label not seen (TypeError if unhashable)."""
        try:
            return (self._net.class_index if index is None else index).get(y)
        except TypeError:
            raise TypeError(f"a class label must be hashable, got {type(y).__name__}") \
                from None

    def _new_label(self, y, known: int | None = None):
        """A label not seen yet, checked (class_label), within MAX_CLASSES."""
        label = class_label(y)
        if (len(self._net.classes) if known is None else known) >= MAX_CLASSES:
            raise ValueError(f"a classifier takes at most {MAX_CLASSES} classes")
        return label

    @staticmethod
    def _probabilities(classes: tuple, probs: np.ndarray) -> list:
        """Per row, {class: probability} from the head's probabilities (rows, logits)."""
        if len(classes) == 0:
            return [{} for _ in range(len(probs))]
        if len(classes) == 1:
            return [{classes[0]: 1.0} for _ in range(len(probs))]
        if len(classes) == 2:
            return [{classes[0]: 1.0 - p, classes[1]: p} for p in probs[:, 0].tolist()]
        return [dict(zip(classes, row)) for row in probs.tolist()]
