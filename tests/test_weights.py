"""Sample weights: learn_one(x, y, w) scales the step's gradient, in every learner."""

import numpy as np
import pytest

from streamlearn import ColumnarClassifier, ColumnarRegressor, ColumnarTD


def _make(cls, **params):
    return cls(n_columns=4, optimizer="sgd", normalize=False, seed=3, **params)


def _target(cls, t):
    return ("a", "b", "c")[t % 3] if cls is ColumnarClassifier else float(np.sin(t))


@pytest.mark.parametrize("cls", [ColumnarRegressor, ColumnarClassifier, ColumnarTD])
def test_a_weight_scales_the_step(cls):
    """From the same state, the parameters move w times as far with weight w (SGD), and
    weight 0 moves nothing while the state still advances."""
    base = _make(cls, step_size=0.01)
    for t in range(20):
        base.learn_one({"u": float(np.cos(t)), "v": 0.5}, _target(cls, t))
    x, y = {"u": 0.3, "v": -0.7}, _target(cls, 20)
    moves = {}
    for w in (0.0, 1.0, 2.5):
        model = cls.from_bytes(base.to_bytes())
        model.learn_one(x, y, w=w)
        moves[w] = model.state_dict()["parameters"] - base.state_dict()["parameters"]
        if w == 0.0:
            observed = cls.from_bytes(base.to_bytes())
            observed.observe_one(x)
            state, expected = model.state_dict(), observed.state_dict()
            for key in ("parameters", "trace_h", "trace_c", "h", "c"):
                np.testing.assert_array_equal(state[key], expected[key], err_msg=key)
    assert not np.any(moves[0.0])
    assert np.any(moves[1.0])
    np.testing.assert_allclose(moves[2.5], 2.5 * moves[1.0], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("cls", [ColumnarRegressor, ColumnarClassifier, ColumnarTD])
@pytest.mark.parametrize("w, error", [(-1.0, ValueError), (float("nan"), ValueError),
                                      (float("inf"), ValueError), ("2", TypeError),
                                      (None, TypeError), (1e300, ValueError)])
def test_a_bad_weight_is_refused_and_changes_nothing(cls, w, error):
    model = _make(cls, step_size=0.01)
    for t in range(5):
        model.learn_one({"u": float(t)}, _target(cls, t))
    saved = model.to_bytes()
    with pytest.raises(error):
        model.learn_one({"u": 1.0}, _target(cls, 5), w=w)
    with pytest.raises(error):
        model.learn_one({"new": 1.0}, _target(cls, 5), w=w)  # the general path too
    assert model.to_bytes() == saved
