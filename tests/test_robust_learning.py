"""The learner against hostile streams: any target scale or offset, extreme and outlying
values, numpy-typed hyper-parameters and values."""

import math

import numpy as np
import pandas as pd
import pytest

from streamlearn import ColumnarRegressor, ColumnarTD
from streamlearn._features import MAX_VALUE

N = 3_000


def _mae_per_scale(scale: float, offset: float = 0.0, n: int = N) -> float:
    """MAE / scale of the defaults on y = offset + scale (2 v + 0.1 e), from the second
    event on (the first prediction has nothing to go by: it is off by the offset)."""
    rng = np.random.default_rng(0)
    model = ColumnarRegressor(seed=1)
    errors = []
    for _ in range(n):
        v = rng.normal()
        y = offset + scale * (2 * v + 0.1 * rng.normal())
        errors.append(abs(y - model.predict_one({"v": v})))
        model.learn_one({"v": v}, y)
    return float(np.mean(errors[1:])) / scale


@pytest.mark.parametrize("scale, offset", [
    (1e-4, 0.0), (1e-2, 0.0), (1e3, 0.0), (1e6, 0.0),
    (1.0, 1e3), (1.0, 1e6), (1.0, -1e6), (1e-4, 1e2), (1e6, 1e6)])
def test_defaults_learn_alike_at_any_target_scale_and_offset(scale, offset):
    reference = _mae_per_scale(1.0)
    assert _mae_per_scale(scale, offset) <= 1.2 * reference


def _stream_mae(outlier_at=None, feature="a", value=1e6, after=20_000, seed=0):
    """MAE over the ``after`` events that follow event ``outlier_at`` of a unit-scale
    stream, where that event's ``feature`` is ``value`` (no outlier when None)."""
    rng = np.random.default_rng(seed)
    model = ColumnarRegressor(seed=1)
    errors = []
    for t in range(outlier_at + 1 + after):
        a, b = rng.normal(), rng.normal()
        x, y = {"a": a, "b": b}, 2 * a - b + 0.1 * rng.normal()
        if t == outlier_at and value is not None:
            x[feature] = value
        prediction = model.predict_one(x)
        model.learn_one(x, y)
        if t > outlier_at:
            errors.append(abs(y - prediction))
    return float(np.mean(errors)), model


@pytest.mark.parametrize("outlier_at", [30, 2_000, 15_000])  # exact, then EMA statistics
@pytest.mark.parametrize("feature, value", [("a", 1e6), ("b", -1e6), ("a", 1e12)])
def test_one_outlier_does_not_silence_a_feature(outlier_at, feature, value):
    clean, _ = _stream_mae(outlier_at, value=None)
    dirty, model = _stream_mae(outlier_at, feature, value)
    assert dirty <= 1.2 * clean
    clipped = dict(zip(model.feature_names, model.state_dict()["normalizer"]["x_clipped"]))
    assert clipped[feature] == 1  # the outlier, counted


def test_a_sustained_shift_still_gets_through_clipping():
    """Clipping bounds one value's effect, not a level shift: the statistics follow it."""
    rng = np.random.default_rng(3)
    model = ColumnarRegressor(seed=2)
    values = np.concatenate([rng.normal(size=2_000), 1e4 + 100 * rng.normal(size=3_000)])
    for a in values:
        model.learn_one({"a": a}, a)
    # the first 10,000 values are averaged exactly (see normalize)
    normalizer = model.state_dict()["normalizer"]
    assert normalizer["x_mean"][0] == pytest.approx(values.mean(), rel=0.02)
    assert math.sqrt(normalizer["x_var"][0]) == pytest.approx(values.std(), rel=0.1)


EXTREMES = [MAX_VALUE, -MAX_VALUE, 1e30, -1e30, 1e-300, 0.0, 1.0, -3.0]
CONFIGS = [{}, {"normalize": False, "optimizer": "sgd", "step_size": 1.0},
           {"normalize": False, "step_size": 10.0}, {"dtype": "float32"},
           {"meta": True, "lateral_density": 0.5},
           {"columns_per_stage": 2, "steps_per_stage": 50}]


@pytest.mark.parametrize("params", CONFIGS + [{"td": True}, {"td": True, "normalize": False}])
def test_state_stays_finite_and_loadable_after_any_accepted_values(params):
    """Random sequences of the most extreme values a learner accepts: every step is taken
    or refused (FloatingPointError, state unchanged), and the state is always finite and
    loads back to the same bytes."""
    params = dict(params)
    cls = ColumnarTD if params.pop("td", False) else ColumnarRegressor
    rng = np.random.default_rng(7)
    model = cls(n_columns=4, seed=3, **params)
    for step in range(300):
        x = {name: float(rng.choice(EXTREMES)) * rng.uniform(0.5, 1.0)
             for name in rng.choice(["a", "b", "c", "d"], size=rng.integers(1, 4))}
        y = float(rng.choice(EXTREMES)) * rng.uniform(0.5, 1.0)
        before = model.to_bytes()
        try:
            model.learn_one(x, y)
        except FloatingPointError:
            assert model.to_bytes() == before
        for key, value in _arrays(model.state_dict()):
            assert np.all(np.isfinite(value)), (step, key)
        if step % 25 == 0:
            data = model.to_bytes()
            assert cls.from_bytes(data).to_bytes() == data


def _arrays(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _arrays(value, f"{prefix}{key}/")
        elif isinstance(value, (np.ndarray, float)):
            yield prefix + key, np.asarray(value, dtype=float)


@pytest.mark.parametrize("bad", [1e200, -1e51, 10**60, 1.5 * MAX_VALUE])
@pytest.mark.parametrize("where", ["x", "y"])
def test_values_beyond_the_range_are_refused_before_anything_changes(bad, where):
    model = ColumnarRegressor(seed=4)
    model.learn_one({"a": 1.0}, 1.0)
    before = model.to_bytes()
    x, y = ({"a": bad}, 1.0) if where == "x" else ({"a": 1.0}, bad)
    with pytest.raises(ValueError, match="out of range"):
        model.learn_one(x, y)
    with pytest.raises(ValueError, match="out of range"):
        model.learn_many(pd.DataFrame([{k: float(v) for k, v in x.items()}]), [float(y)])
    assert model.to_bytes() == before


def test_numpy_hyper_parameters_are_accepted():
    """A grid built with numpy: integer, float, bool and dtype hyper-parameters."""
    model = ColumnarRegressor(n_columns=np.int64(6), step_size=np.float32(0.05),
                              dtype=np.float32, normalize=np.bool_(True), seed=np.int64(3),
                              steps_per_stage=np.int32(100), init_scale=np.float64(0.5))
    plain = ColumnarRegressor(n_columns=6, step_size=float(np.float32(0.05)), dtype="float32",
                              seed=3, steps_per_stage=100)
    rng = np.random.default_rng(1)
    for _ in range(50):
        x = {"a": float(rng.normal())}
        assert model.predict_one(x) == plain.predict_one(x)
        model.learn_one(x, x["a"])
        plain.learn_one(x, x["a"])
    assert model.to_bytes() == plain.to_bytes()
    assert ColumnarRegressor.from_bytes(model.to_bytes()).to_bytes() == model.to_bytes()
    assert model.clone().n_columns == 6
    for other in (ColumnarTD(n_columns=np.int16(3), gamma=np.float32(0.5), seed=np.uint8(1)),
                  ColumnarRegressor(dtype=np.dtype("float64"), meta=np.bool_(False))):
        other.learn_one({"a": 1.0}, 1.0)


@pytest.mark.parametrize("params", [{"n_columns": np.float64(3)}, {"n_columns": True},
                                    {"step_size": np.bool_(True)}, {"dtype": np.int32},
                                    {"normalize": 1}, {"dtype": None}])
def test_numpy_values_of_the_wrong_kind_are_still_refused(params):
    with pytest.raises(ValueError):
        ColumnarRegressor(**params)


def test_numpy_bool_features_count_as_0_and_1_like_bools():
    with_numpy, with_python = ColumnarRegressor(seed=5), ColumnarRegressor(seed=5)
    for t in range(40):
        flag = t % 3 == 0
        with_numpy.learn_one({"on": np.bool_(flag), "v": np.float32(t / 40)}, np.bool_(flag))
        with_python.learn_one({"on": flag, "v": float(np.float32(t / 40))}, flag)
    assert with_numpy.to_bytes() == with_python.to_bytes()


def test_pandas_rows_with_numpy_bools_stream_through():
    frame = pd.DataFrame({"on": [True, False, True, True], "v": [0.5, 1.5, -0.5, 2.0]})
    model = ColumnarRegressor(seed=6)
    for i in range(len(frame)):
        x, y = {name: frame.iloc[i][name] for name in frame.columns}, frame.iloc[i]["v"] * 2
        assert isinstance(x["on"], np.bool_)
        model.predict_one(x)
        model.learn_one(x, y)
    assert model.feature_names == ["on", "v"]
