"""streamlearn.diagnostics: exactness without lateral connections, the exact gradient against
finite differences through the compiled learner, and configuration errors."""

import math

import numpy as np
import pytest

from streamlearn import ColumnarRegressor
from streamlearn.diagnostics import exact_gradient, gradient_fidelity


def _testbed(seed, T=50, m=50):
    """The 2021 paper's test-bed: Bernoulli(0.5) inputs, targets U(-50, 50)."""
    rng = np.random.default_rng(seed)
    return [({f"x{j}": float(v) for j, v in enumerate(rng.integers(0, 2, m))},
             float(rng.uniform(-50, 50))) for _ in range(T)]


def _with_head(model, seed):
    """Random head weights, so every column's gradient is non-trivial."""
    state = model.state_dict()
    state["head_weights"] = np.random.default_rng(seed).normal(size=model.n_columns)
    model.load_state_dict(state)
    return model


@pytest.mark.parametrize("seed", range(3))
def test_plain_columns_are_exact(seed):
    model = _with_head(ColumnarRegressor(n_columns=20, normalize=False, optimizer="sgd",
                                         seed=seed), seed)
    report = gradient_fidelity(model, _testbed(seed))
    assert report["cosine"] == pytest.approx(1.0, abs=1e-9)
    assert report["sign_agreement"] == 1.0
    assert report["relative_error"] < 1e-9


def test_dense_lateral_connections_are_only_approximate():
    model = _with_head(ColumnarRegressor(n_columns=20, normalize=False, lateral_density=1.0,
                                         seed=4), 4)
    report = gradient_fidelity(model, _testbed(4))
    assert report["sign_agreement"] < 0.95 and report["cosine"] < 0.99


def _summed_loss(model, stream):
    clone = ColumnarRegressor.from_state_dict(model.state_dict())
    total = 0.0
    for x, y in stream:
        total += 0.5 * (y - clone.predict_one(x)) ** 2
        clone.learn_one(x, y)
    return total


@pytest.mark.parametrize("meta", [False, True])
def test_exact_gradient_matches_finite_differences_through_the_learner(meta):
    """Finite differences of the loss computed by the compiled learner (step_size 0; in meta
    mode its head keeps learning by LMS) against diagnostics.exact_gradient."""
    rng = np.random.default_rng(5)
    model = ColumnarRegressor(n_columns=3, normalize=False, optimizer="sgd", step_size=0.0,
                              lateral_density=1.0, meta=meta, head_step_size=0.05, seed=5)
    stream = [({"a": float(rng.normal()), "b": float(rng.normal())}, float(rng.normal()))
              for _ in range(8)]
    model.add_features(["a", "b"])
    state = model.state_dict()
    state["head_weights"] = rng.normal(size=3)
    model.load_state_dict(state)
    xs = np.array([[x["a"], x["b"]] for x, _ in stream])
    ys = np.array([y for _, y in stream])
    exact = exact_gradient(state, xs, ys, head_step_size=0.05 if meta else None)
    eps, fd = 1e-6, []
    for key, shape in (("parameters", state["parameters"].shape),
                       ("lateral", state["lateral"]["weights"].shape)):
        for idx in np.ndindex(shape):
            losses = []
            for sign in (1, -1):
                s = model.state_dict()
                target = s["parameters"] if key == "parameters" else s["lateral"]["weights"]
                target[idx] += sign * eps
                probe = ColumnarRegressor.from_state_dict(s)
                losses.append(_summed_loss(probe, stream))
            fd.append((losses[0] - losses[1]) / (2 * eps))
    np.testing.assert_allclose(exact, np.array(fd), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, math.inf, "0.5", True, None])
def test_bad_lateral_density_is_rejected(bad):
    with pytest.raises(ValueError, match="lateral_density"):
        ColumnarRegressor(lateral_density=bad)


@pytest.mark.parametrize("params, match", [
    ({"head_step_size": -1.0}, "head_step_size"),
    ({"meta": 1}, "meta"),
    ({"n_columns": 0}, "n_columns"),
    ({"optimizer": "adam"}, "optimizer"),
])
def test_bad_configurations_are_rejected(params, match):
    with pytest.raises(ValueError, match=match):
        ColumnarRegressor(**params)


def test_fidelity_needs_raw_units():
    with pytest.raises(ValueError, match="normalize=False"):
        gradient_fidelity(ColumnarRegressor(), _testbed(0, T=3))
