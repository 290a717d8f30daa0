"""Shared helpers for the tests."""

import numpy as np
import pytest

from streamlearn import ColumnarRegressor


def load_random_parameters(model: ColumnarRegressor, names, rng, scale=1.0):
    """Give ``model`` features ``names`` and random parameters U(-scale, scale) through
    load_state_dict, with zero states and traces."""
    state = model.state_dict()
    n, m = model.n_columns, len(names)
    state.update(
        feature_names=list(names),
        parameters=rng.uniform(-scale, scale, size=(n, 4, m + 2)),
        trace_h=np.zeros((n, 4, m + 2)),
        trace_c=np.zeros((n, 4, m + 2)),
        head_weights=rng.uniform(-scale, scale, size=n),
    )
    state["optimizer"]["v"] = np.ones((n, 4, m + 2))
    for key in ("x_mean", "x_var", "x_count", "x_clipped"):
        state["normalizer"][key] = np.zeros(m)
    model.load_state_dict(state)


def dense_inputs(stream, names):
    """(T, m) matrix of a list of feature dicts in ``names`` order, absent features as 0."""
    return np.array([[x.get(name, 0.0) for name in names] for x in stream], dtype=float)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
