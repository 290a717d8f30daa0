"""Bad input raises a clear error and leaves the learner byte-for-byte unchanged."""

import collections
import math

import numpy as np
import pytest

from streamlearn import ColumnarRegressor


@pytest.fixture
def trained():
    model = ColumnarRegressor(seed=9)
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = {"a": float(rng.normal()), "b": float(rng.normal())}
        model.learn_one(x, 3 * x["a"])
    return model


BAD_X = [
    ({"a": "1.0"}, TypeError),
    ({"a": None}, TypeError),
    ({"a": [1.0]}, TypeError),
    ({"a": 1.0, "new": "x"}, TypeError),
    ({"a": math.nan}, ValueError),
    ({"a": math.inf}, ValueError),
    ({"a": 1.0, "new": -math.inf}, ValueError),
    ({"a": 10**400}, ValueError),
    ({"a": np.float64("nan")}, ValueError),
    ([("a", 1.0)], TypeError),
    (None, TypeError),
    ("a=1", TypeError),
]


@pytest.mark.parametrize("x, error", BAD_X)
@pytest.mark.parametrize("method", ["learn_one", "predict_one", "observe_one"])
def test_bad_features_raise_and_change_nothing(trained, x, error, method):
    before = trained.to_bytes()
    call = getattr(trained, method)
    with pytest.raises(error):
        call(x, 1.0) if method == "learn_one" else call(x)
    assert trained.to_bytes() == before
    assert trained.feature_names == ["a", "b"]


@pytest.mark.parametrize("y, error", [
    (math.nan, ValueError), (math.inf, ValueError), (-math.inf, ValueError),
    ("2.0", TypeError), (None, TypeError), ([2.0], TypeError), (10**400, ValueError),
])
@pytest.mark.parametrize("x", [{"a": 1.0, "new": 2.0}, {"a": 1.0, "b": 2.0}])
def test_bad_target_raises_and_changes_nothing(trained, y, error, x):
    """With a new feature (the learner grows) and with known ones (one kernel call)."""
    trained.predict_one(x)  # a pending forward step on x must not be committed either
    before = trained.to_bytes()
    with pytest.raises(error, match="'y'"):
        trained.learn_one(x, y)
    assert trained.to_bytes() == before


def test_error_message_names_the_feature(trained):
    with pytest.raises(ValueError, match="'temp'"):
        trained.learn_one({"a": 1.0, "temp": math.nan}, 1.0)


def test_numpy_and_int_values_are_accepted(trained):
    trained.learn_one({"a": np.float32(0.5), "b": np.int64(2), "c": 3, "d": True}, np.float64(1.0))
    assert trained.feature_names == ["a", "b", "c", "d"]


def test_divergence_is_refused_without_corrupting_state():
    """Raw inputs at the largest accepted magnitude drive an SGD learner to diverge: the step
    that would overflow is refused, the state kept (and still loadable)."""
    model = ColumnarRegressor(normalize=False, optimizer="sgd", step_size=1.0, seed=0)
    model.learn_one({"a": 1.0}, 1.0)
    for _ in range(100):
        before = model.to_bytes()
        try:
            model.learn_one({"a": 1e50}, -1e50)
        except FloatingPointError as exc:
            assert "unchanged" in str(exc)
            break
    else:
        pytest.fail("the learner never refused a step")
    assert model.to_bytes() == before
    ColumnarRegressor.from_bytes(before)


def test_float32_refuses_what_would_overflow_float32_and_keeps_state():
    """Values float64 takes in its stride (1e12) would push float32 parameters past 1e18:
    the float32 learner refuses the step, its state unchanged and finite."""
    steps = [({"a": 1.0}, 1.0), ({"a": 1e12}, 1e12), ({"a": 1e12}, 1e12)]
    wide = ColumnarRegressor(normalize=False, optimizer="sgd", step_size=1.0, seed=0)
    for x, y in steps:
        wide.learn_one(x, y)
    model = ColumnarRegressor(normalize=False, optimizer="sgd", step_size=1.0, seed=0,
                              dtype="float32")
    model.learn_one(*steps[0])
    model.learn_one(*steps[1])
    before = model.to_bytes()
    with pytest.raises(FloatingPointError, match="1e18 for float32"):
        model.learn_one(*steps[2])
    assert model.to_bytes() == before
    state = model.state_dict()
    for key in ("parameters", "trace_h", "trace_c"):
        assert state[key].dtype == np.float32 and np.all(np.isfinite(state[key]))


def test_predict_one_is_pure_even_with_new_features(trained):
    before = trained.to_bytes()
    for _ in range(3):
        trained.predict_one({"a": 0.1, "brand_new": 4.0})
    assert trained.to_bytes() == before
    assert trained.feature_names == ["a", "b"]


def test_cached_prediction_matches_an_uncached_step(trained):
    other = ColumnarRegressor.from_bytes(trained.to_bytes())
    x = {"a": 0.2, "brand_new": -1.0}
    assert trained.predict_one(x) == other.predict_one(dict(x))
    x["a"] = 5.0  # the cache must not alias the caller's dict
    trained.learn_one(x, 1.0)
    other.learn_one({"a": 5.0, "brand_new": -1.0}, 1.0)
    assert trained.to_bytes() == other.to_bytes()


class _Features(dict):
    """A dict subclass, as River's own transformers or a user's code may pass."""


@pytest.mark.parametrize("kind", [collections.OrderedDict, _Features])
def test_dict_subclasses_step_like_plain_dicts(trained, kind):
    other = ColumnarRegressor.from_bytes(trained.to_bytes())
    steps = [({"a": 0.4, "b": -1.0}, 2.0), ({"b": 0.3, "a": 1.5}, -1.0),
             ({"a": 0.1, "c": 2.0}, 0.5)]  # known features in either order, then a new one
    for x, y in steps:
        assert trained.predict_one(kind(x)) == other.predict_one(dict(x))
        trained.learn_one(kind(x), y)
        other.learn_one(dict(x), y)
        assert trained.to_bytes() == other.to_bytes()
