"""ColumnarForecaster: forecasts leave the learner unchanged and roll its state on their own
values, seasons come from datetimes, bad input changes nothing, state round trips."""

import datetime as dt
import math
import pickle

import numpy as np
import pytest
from river import datasets, evaluate, metrics

from streamlearn import ColumnarForecaster, ColumnarRegressor
from streamlearn.forecaster import RESIDUAL, season_of
from streamlearn.serialization import SerializationError


def _series(T=60, start=dt.datetime(2020, 1, 1), step=dt.timedelta(days=1)):
    rng = np.random.default_rng(0)
    return [({"when": start + t * step, "temp": float(rng.normal())},
             10 + math.sin(2 * math.pi * t / 7) + 0.1 * t + float(rng.normal(scale=0.1)))
            for t in range(T)]


def _learned(**params):
    model = ColumnarForecaster(n_columns=5, seed=1, **params)
    for x, y in _series():
        model.learn_one(y, x)
    return model


def test_a_forecast_rolls_a_copy_on_its_own_values_and_changes_nothing():
    model = _learned()
    assert model._season == 7  # daily datetimes
    saved = model.to_bytes()
    xs = [{"when": dt.datetime(2020, 3, 1) + dt.timedelta(days=k), "temp": 0.5}
          for k in range(4)]
    out = model.forecast(4, xs)
    assert model.to_bytes() == saved
    # the same by hand: a copy of the regressor stepped on each forecast's residual
    copy = ColumnarRegressor.from_bytes(model._regressor.to_bytes())
    history, residual = list(model._history), model._residual
    for k, x in enumerate(xs):
        features = model._features(x, residual)
        residual = copy.predict_one(features)
        expected = history[-1] + history[-7] - history[-8] + residual
        assert out[k] == expected
        copy.observe_one(features)
        history.append(expected)
    assert model.forecast(4, xs) == out  # deterministic, still nothing changed


@pytest.mark.parametrize("step, season", [(dt.timedelta(hours=1), 24), (dt.timedelta(days=1), 7),
                                          (dt.timedelta(days=7), 52),
                                          (dt.timedelta(days=31), 12),
                                          (dt.timedelta(days=91), 4),
                                          (dt.timedelta(minutes=5), 0)])
def test_the_season_comes_from_the_datetimes_spacing(step, season):
    assert season_of(step) == season
    model = ColumnarForecaster(n_columns=3, seed=2)
    for x, y in _series(T=5, step=step):
        model.learn_one(y, x)
    assert model._season == season


@pytest.mark.parametrize("x", [{"d": dt.date(2021, 5, 3)},
                               {"d": dt.datetime(2021, 5, 3, 4, tzinfo=dt.timezone.utc)},
                               {"d": dt.datetime(2021, 5, 3), "e": dt.date(2021, 5, 4)},
                               {"kind": "weekday", "n": 3, "flag": True}, None, {}])
def test_datetimes_and_other_plain_values_never_fail(x):
    model = ColumnarForecaster(n_columns=3, seed=3)
    for t in range(5):
        model.learn_one(float(t), x)
        assert len(model.forecast(2, [x, x] if x is not None else None)) == 2


@pytest.mark.parametrize("y, x, error", [(float("nan"), None, ValueError),
                                         ("1", None, TypeError),
                                         (1.0, {"a": float("inf")}, ValueError),
                                         (1.0, {"a": [1]}, TypeError),
                                         (1.0, ["a"], TypeError)])
def test_bad_input_is_refused_and_changes_nothing(y, x, error):
    model = _learned()
    saved = model.to_bytes()
    with pytest.raises(error):
        model.learn_one(y, x)
    if x is not None:
        with pytest.raises(error):
            model.forecast(1, [x])
    assert model.to_bytes() == saved
    with pytest.raises(ValueError):
        model.forecast(-1)
    with pytest.raises(ValueError):
        model.forecast(3, [{}])


def test_state_round_trips_and_continues_identically():
    model = _learned()
    for copy in (ColumnarForecaster.from_bytes(model.to_bytes()),
                 pickle.loads(pickle.dumps(model))):
        assert copy.to_bytes() == model.to_bytes()
        x = {"when": dt.datetime(2020, 3, 1), "temp": 0.1}
        assert copy.forecast(3, [x] * 3) == model.forecast(3, [x] * 3)
    data = bytearray(model.to_bytes())
    data[-10] ^= 1
    with pytest.raises(SerializationError):
        ColumnarForecaster.from_bytes(bytes(data))
    state = model.state_dict()
    for bad in ({"history": [1.0] * 20}, {"residual": float("nan")}, {"season": -1},
                {"first_time": "yesterday"}, {"params": {}}):
        with pytest.raises(SerializationError):
            ColumnarForecaster.from_state_dict(dict(state, **bad))


def test_rivers_evaluate_runs_with_a_horizon():
    result = evaluate.evaluate(datasets.AirlinePassengers(), ColumnarForecaster(seed=0),
                               metrics.MAE(), horizon=12)
    assert len(result.metrics) == 12
    assert all(math.isfinite(m.get()) for m in result.metrics)


def test_the_residual_input_is_reserved():
    model = ColumnarForecaster(n_columns=3, seed=4)
    with pytest.raises(ValueError, match="reserved"):
        model.learn_one(1.0, {RESIDUAL: 5.0})
    assert model.to_bytes() == ColumnarForecaster(n_columns=3, seed=4).to_bytes()
