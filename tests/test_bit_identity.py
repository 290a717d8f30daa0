"""Learners are bit-identical across refactorings: a fixed stream through every
configuration of ``_unit_test_params`` gives the predictions and ``state_dict()`` arrays
whose SHA-256 digests ``data/bit_identity.json`` recorded (at commit 5dff1ae; re-recorded
when ``stage_lag`` joined the params, every other digest unchanged).

The stream exercises what a refactoring could break: features arriving in three waves
(growth), unlabelled steps, a state reset, and the compiled ``learn_many`` path.
``python tests/test_bit_identity.py`` prints the digests of the code as it is, to record
only after a deliberate change of the numbers."""

import hashlib
import json
import os

import numpy as np
import pytest

from streamlearn import ColumnarRegressor, ColumnarTD

DIGESTS = os.path.join(os.path.dirname(__file__), "data", "bit_identity.json")


def _configurations():
    for cls in (ColumnarRegressor, ColumnarTD):
        for i, params in enumerate(cls._unit_test_params()):
            yield f"{cls.__name__}-{i}", cls, {"seed": 0, **params}  # None would draw one


def _digest(cls, params) -> dict:
    rng = np.random.default_rng(2024)
    model = cls(**params)
    predictions = []
    for t in range(240):
        x = {"a": float(rng.normal()), "b": float(rng.uniform(-2, 2))}
        if t >= 80:
            x["c"] = float(rng.normal() * 5)
        y = float(np.sin(t / 7) + 0.3 * x["a"])
        if t == 160:
            model.reset_state()
        if isinstance(model, ColumnarRegressor):
            predictions.append(model.predict_one(x))
        if t % 5 == 4 and isinstance(model, ColumnarRegressor):
            model.observe_one(x)
        else:
            model.learn_one(x, y)
    if isinstance(model, ColumnarRegressor):
        X = rng.normal(size=(60, 4))
        predictions.extend(model.learn_many(X, X[:, 0] - X[:, 3],
                                            feature_names=["a", "b", "c", "d"]))
        predictions.extend(model.predict_many(X[:5], feature_names=["a", "b", "c", "d"]))
    else:
        predictions.append(model.td_error)
    out = {"predictions": hashlib.sha256(np.array(predictions, np.float64).tobytes()).hexdigest()}

    def walk(node, path):
        for key in sorted(node):
            value = node[key]
            if isinstance(value, dict):
                walk(value, f"{path}{key}/")
            elif isinstance(value, np.ndarray):
                data = np.ascontiguousarray(value)
                out[path + key] = hashlib.sha256(
                    f"{data.dtype.str}{data.shape}".encode() + data.tobytes()).hexdigest()
            else:
                out[path + key] = hashlib.sha256(repr(value).encode()).hexdigest()
    walk(model.state_dict(), "state/")
    return out


with open(DIGESTS) as f:
    RECORDED = json.load(f)


@pytest.mark.parametrize("name,cls,params", list(_configurations()))
def test_numbers_are_the_recorded_ones(name, cls, params):
    assert name in RECORDED, f"no digests recorded for {name}"
    got, want = _digest(cls, params), RECORDED[name]
    changed = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    assert not changed, f"{name}: differs from the recorded numbers in {changed}"


if __name__ == "__main__":
    print(json.dumps({name: _digest(cls, params) for name, cls, params in _configurations()},
                     indent=1, sort_keys=True))
