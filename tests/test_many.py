"""learn_many / predict_many: the same steps as the learn_one loop, in one compiled call."""

import numpy as np
import pandas as pd
import pytest

from streamlearn import ColumnarRegressor, ColumnarTD


def _frame(seed, rows, columns=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(rows, len(columns))), columns=list(columns))


@pytest.mark.parametrize("params", [{}, {"columns_per_stage": 2, "n_columns": 6,
                                         "steps_per_stage": 7}, {"lateral_density": 0.3}])
def test_learn_many_is_the_learn_one_loop(params):
    one, many = ColumnarRegressor(seed=1, **params), ColumnarRegressor(seed=1, **params)
    chunks = [_frame(0, 10, ("a", "b")), _frame(1, 13, ("b", "c", "a")), _frame(2, 5, ("c",))]
    for X in chunks:
        y = X.sum(axis=1) * 3.0
        for (_, row), target in zip(X.iterrows(), y):
            one.learn_one(row.to_dict(), target)
        many.learn_many(X, y)
    assert many.to_bytes() == one.to_bytes()
    X = _frame(3, 4, ("a", "b", "c", "new"))
    assert list(many.predict_many(X)) == [one.predict_one(r.to_dict()) for _, r in X.iterrows()]
    assert many.to_bytes() == one.to_bytes()  # predict_many changed nothing


class Name(str):
    """A str subclass key: equal to the plain name, never taken for it by identity."""


def test_dicts_in_any_key_order_and_key_objects_match_the_dense_rows():
    """learn_one places each dict's values by name, however its keys come: in another
    order from step to step, as fresh equal str objects, as a str subclass, with a
    feature absent (it reads 0). The same rows as a dense matrix give bit-identical
    predictions and state."""
    names = ["a", "b", "c", "d"]
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(60, 4)), rng.normal(size=60)
    X[5::9, 2] = 0.0  # "c" left out of those dicts below
    one, many = ColumnarRegressor(n_columns=6, seed=3), ColumnarRegressor(n_columns=6, seed=3)
    one.add_features(names)
    many.add_features(names)
    predictions = []
    for t, (row, target) in enumerate(zip(X, y)):
        order = names[t % 4:] + names[:t % 4] if t % 7 else names[::-1]
        keys = {"a": "".join(["a"]), "b": Name("b") if t % 3 == 0 else "b"}
        x = {keys.get(n, n): float(row[names.index(n)]) for n in order
             if not (n == "c" and t % 9 == 5)}
        predictions.append(one.predict_one(x))
        one.learn_one(dict(reversed(list(x.items()))) if t % 5 == 0 else x, target)
    assert list(many.learn_many(X, y, feature_names=names)) == predictions
    assert many.to_bytes() == one.to_bytes()


def test_arrays_with_feature_names():
    a, b = ColumnarRegressor(seed=2), ColumnarRegressor(seed=2)
    X = _frame(4, 20)
    a.learn_many(X, X["a"])
    b.learn_many(X.to_numpy(), X["a"].to_numpy(), feature_names=["a", "b", "c"])
    assert a.to_bytes() == b.to_bytes()
    with pytest.raises(TypeError, match="feature_names"):
        b.learn_many(X.to_numpy(), X["a"].to_numpy())


def test_strided_targets_and_rows_are_taken():
    """y as a column of a C-ordered 2-D array (a strided view, as a DataFrame's column can
    be), and X as every other row: the same steps as contiguous copies."""
    a, b = ColumnarRegressor(seed=3), ColumnarRegressor(seed=3)
    block = np.random.default_rng(0).normal(size=(40, 4))
    X, y = block[::2, :3], block[::2, 3]
    assert not y.flags.c_contiguous and not X.flags.c_contiguous
    a.learn_many(X, y, feature_names=["a", "b", "c"])
    b.learn_many(X.copy(), y.copy(), feature_names=["a", "b", "c"])
    assert a.to_bytes() == b.to_bytes()


@pytest.mark.parametrize("bad", ["nan_x", "inf_y", "strings", "short_y", "duplicate"])
def test_bad_chunks_change_nothing(bad):
    model = ColumnarRegressor(seed=3)
    model.learn_many(_frame(5, 10), np.ones(10))
    before = model.to_bytes()
    X, y = _frame(6, 8, ("a", "b", "z")), np.ones(8)
    if bad == "nan_x":
        X.iloc[3, 1] = np.nan
    elif bad == "inf_y":
        y[5] = np.inf
    elif bad == "strings":
        X["b"] = "warm"
    elif bad == "short_y":
        y = y[:-1]
    else:
        X.columns = ["a", "a", "z"]
    with pytest.raises((ValueError, TypeError)):
        model.learn_many(X, y)
    assert model.to_bytes() == before
    assert model.feature_names == ["a", "b", "c"]


def test_td_chunks_cross_stages_like_single_steps():
    one = ColumnarTD(n_columns=4, columns_per_stage=2, steps_per_stage=5, seed=4)
    many = ColumnarTD(n_columns=4, columns_per_stage=2, steps_per_stage=5, seed=4)
    X = _frame(7, 17)
    c = (X["a"] > 1).astype(float)
    for (_, row), cumulant in zip(X.iterrows(), c):
        one.learn_one(row.to_dict(), cumulant)
    values = many.learn_many(X, c)
    assert many.stage == one.stage == 1
    assert many.to_bytes() == one.to_bytes()
    replay = ColumnarTD(n_columns=4, columns_per_stage=2, steps_per_stage=5, seed=4)
    expected = []
    for (_, row), cumulant in zip(X.iterrows(), c):
        expected.append(replay.predict_one(row.to_dict()))
        replay.learn_one(row.to_dict(), cumulant)
    assert list(values) == expected
