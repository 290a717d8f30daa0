"""Per-column RTRL traces against an independent float64 BPTT (and BPTT against finite
differences)."""

import platform

import numpy as np
import pytest

from conftest import dense_inputs, load_random_parameters
from reference import bptt, final_state
from streamlearn import ColumnarRegressor, ColumnarTD


def _stream(rng, T):
    """Inputs where feature 'late' appears mid-stream and 'b' is sometimes absent."""
    stream = []
    for t in range(T):
        x = {"a": rng.normal(), "c": rng.normal()}
        if rng.random() < 0.7:
            x["b"] = rng.normal()
        if t >= T // 2:
            x["late"] = rng.normal()
        stream.append(x)
    return stream


def _max_relative_error(estimate, reference):
    """max |e - r| / |r| over entries, with |r| floored at 1e-12 of the largest entry."""
    floor = 1e-12 * np.abs(reference).max()
    return float(np.max(np.abs(estimate - reference) / np.maximum(np.abs(reference), floor)))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop"])
def test_traces_equal_bptt(seed, optimizer):
    rng = np.random.default_rng(seed)
    model = ColumnarRegressor(n_columns=6, step_size=0.0, normalize=False, optimizer=optimizer,
                              seed=seed)
    load_random_parameters(model, ["a", "b", "c"], rng)
    loaded = model.state_dict()["parameters"]
    stream = _stream(rng, T=40)
    for t, x in enumerate(stream):
        if t % 3 == 0:
            model.observe_one(x)
        else:
            model.predict_one(x)
            model.learn_one(x, float(rng.normal(scale=10.0)))
    state = model.state_dict()
    assert state["feature_names"] == ["a", "b", "c", "late"]
    P = state["parameters"]
    xs = dense_inputs(stream, state["feature_names"])
    n = model.n_columns
    h, c = final_state(P, xs)
    np.testing.assert_allclose(state["h"], h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state["c"], c, rtol=1e-12, atol=1e-14)
    assert _max_relative_error(state["trace_h"], bptt(P, xs, np.ones(n), np.zeros(n))) < 1e-6
    assert _max_relative_error(state["trace_c"], bptt(P, xs, np.zeros(n), np.ones(n))) < 1e-6
    # step_size = 0: the loaded parameters never moved
    np.testing.assert_array_equal(P[:, :, [0, 1, 2, 4, 5]], loaded)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop"])
def test_float32_traces_follow_float64_bptt_to_float32_accuracy(seed, optimizer):
    """dtype="float32": the forward step reads the float32 parameters exactly (in double),
    so states match the reference; the traces, kept and computed in float32, match it to
    float32 accuracy (normwise, after 40 steps)."""
    rng = np.random.default_rng(seed)
    model = ColumnarRegressor(n_columns=6, step_size=0.0, normalize=False, optimizer=optimizer,
                              dtype="float32", seed=seed)
    load_random_parameters(model, ["a", "b", "c"], rng)
    stream = _stream(rng, T=40)
    for t, x in enumerate(stream):
        model.predict_one(x)
        model.learn_one(x, float(rng.normal(scale=10.0)))
    state = model.state_dict()
    assert state["parameters"].dtype == state["trace_h"].dtype == np.float32
    P = state["parameters"].astype(np.float64)
    xs = dense_inputs(stream, state["feature_names"])
    n = model.n_columns
    h, c = final_state(P, xs)
    np.testing.assert_allclose(state["h"], h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state["c"], c, rtol=1e-12, atol=1e-14)
    for key, dh, dc in (("trace_h", 1, 0), ("trace_c", 0, 1)):
        reference = bptt(P, xs, np.full(n, float(dh)), np.full(n, float(dc)))
        error = np.abs(state[key] - reference).max() / np.abs(reference).max()
        assert error < 1e-6, (key, error)
        assert error > 0  # float32 rounding shows: the traces really are float32


def test_float32_learning_stays_close_to_float64():
    """The same stream learned in float32 and float64 (RMSProp, normalised): predictions
    agree to float32 accuracy over 500 steps."""
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(500, 3)), rng.normal(size=500)
    names = ["a", "b", "c"]
    predictions = []
    for dtype in ("float64", "float32"):
        model = ColumnarRegressor(n_columns=8, seed=4, dtype=dtype)
        predictions.append([_learn(model, dict(zip(names, row)), target)
                            for row, target in zip(X, y)])
    p64, p32 = np.array(predictions[0]), np.array(predictions[1])
    assert np.abs(p32 - p64).max() < 1e-5 * max(1.0, np.abs(p64).max())
    assert np.any(p32 != p64)


def _learn(model, x, y):
    prediction = model.predict_one(x)
    model.learn_one(x, y)
    return prediction


@pytest.mark.parametrize("make", [
    lambda: ColumnarRegressor(n_columns=20, seed=1),
    lambda: ColumnarRegressor(n_columns=20, optimizer="sgd", step_size=0.01, seed=2),
    lambda: ColumnarRegressor(n_columns=20, meta=True, lateral_density=0.2, seed=3),
    lambda: ColumnarTD(n_columns=20, columns_per_stage=10, steps_per_stage=60, seed=4),
])
def test_both_layouts_learn_the_same(make):
    """The kernel's two code paths, column by column on (n, 4, K) C-order arrays and across
    columns on column-innermost ones, take the same steps (to rounding: the pre-activation
    sums are ordered differently) for every rule, with laterals and stages."""
    names = ["a", "b", "c"]
    across, by_column = make(), make()
    for model in (across, by_column):
        model.add_features(names)
    net = by_column._net
    for key in ("P", "TH", "TC", "V", "AUX"):
        if key in net.arrays:
            net.arrays[key] = np.ascontiguousarray(net.arrays[key])
    net._drop_kernel()
    assert net.arrays["P"].strides[0] > net.arrays["P"].itemsize  # column after column
    assert across._net.arrays["P"].strides[0] == across._net.arrays["P"].itemsize
    rng = np.random.default_rng(5)
    for t in range(150):
        x = dict(zip(names, rng.normal(size=3)))
        y = float(x["a"] - x["b"] + rng.normal(scale=0.1))
        assert by_column.predict_one(x) == pytest.approx(across.predict_one(x), rel=1e-9,
                                                         abs=1e-12)
        across.learn_one(x, y)
        by_column.learn_one(x, y)
    for key in ("P", "TH", "TC", "V"):
        np.testing.assert_allclose(by_column._net.arrays[key], across._net.arrays[key],
                                   rtol=1e-7, atol=1e-12)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="flush-to-zero is set only on x86-64")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_columns", [4, 32])  # column by column, across columns
@pytest.mark.parametrize("many", [False, True])
def test_subnormal_traces_flush_to_zero_and_the_callers_mode_comes_back(dtype, n_columns,
                                                                         many):
    """A trace at the smallest normal value, with a zero input, becomes f * tiny: subnormal in
    IEEE arithmetic (0 < f < 1), and slow on Intel cores. The kernel flushes it to 0, and
    the caller's arithmetic keeps its subnormals after the call."""
    tiny = np.finfo(dtype).tiny
    model = ColumnarRegressor(n_columns=n_columns, step_size=0.0, normalize=False, seed=0,
                              dtype=dtype)
    load_random_parameters(model, ["a", "b"], np.random.default_rng(0))
    state = model.state_dict()
    state["trace_c"][:, :, 0] = tiny  # feature a: TC = tiny, TH = 0
    model.load_state_dict(state)
    if many:
        model.learn_many(np.array([[0.0, 1.0]]), np.array([1.0]), feature_names=["a", "b"])
    else:
        model.predict_one({"a": 0.0, "b": 1.0})
        model.learn_one({"a": 0.0, "b": 1.0}, 1.0)
    after = model.state_dict()
    assert np.all(after["trace_c"][:, :, 0] == 0) and np.all(after["trace_h"][:, :, 0] == 0)
    assert np.all(after["trace_h"][:, [0, 2, 3], 1] != 0)  # b moved as usual (c(t-1) = 0: not f)
    half = np.array([tiny], dtype=dtype) * np.array([0.5], dtype=dtype)
    assert 0 < half[0] < tiny


def test_bptt_reference_matches_finite_differences():
    rng = np.random.default_rng(7)
    n, m, T, eps = 2, 3, 12, 1e-6
    P = rng.uniform(-1, 1, size=(n, 4, m + 2))
    xs = rng.normal(size=(T, m))
    grad = bptt(P, xs, np.ones(n), np.zeros(n))
    fd = np.zeros_like(P)
    for idx in np.ndindex(P.shape):
        up, down = P.copy(), P.copy()
        up[idx] += eps
        down[idx] -= eps
        fd[idx] = (final_state(up, xs)[0] - final_state(down, xs)[0]).sum() / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


def test_learning_uses_the_trace_gradient():
    """One SGD step with no normalisation moves each parameter by step * delta * w_i * TH."""
    rng = np.random.default_rng(3)
    model = ColumnarRegressor(n_columns=4, step_size=0.0, normalize=False, optimizer="sgd",
                              seed=3)
    load_random_parameters(model, ["a", "b"], rng)
    for _ in range(5):
        model.learn_one({"a": rng.normal(), "b": rng.normal()}, 1.0)
    before = model.state_dict()
    x, y = {"a": 0.3, "b": -1.2}, 2.5
    stepped = ColumnarRegressor(n_columns=4, step_size=0.01, normalize=False, optimizer="sgd",
                                seed=3)
    params = stepped._get_params()
    before_for_stepped = dict(before, params=params)
    stepped.load_state_dict(before_for_stepped)
    y_hat = stepped.predict_one(x)
    stepped.learn_one(x, y)
    after = stepped.state_dict()
    delta = y - y_hat
    w = before["head_weights"]
    expected = before["parameters"] + 0.01 * delta * w[:, None, None] * after["trace_h"]
    np.testing.assert_allclose(after["parameters"], expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(after["head_weights"], w + 0.01 * delta * after["h"], rtol=1e-12)
    assert after["head_bias"] == pytest.approx(before["head_bias"] + 0.01 * delta, rel=1e-12)


@pytest.mark.parametrize("stage_lag", [0, 1])
def test_a_learning_stages_traces_equal_bptt_with_the_frozen_states_as_inputs(stage_lag):
    """The frozen stage's states are inputs to the learning stage, so its traces are the
    BPTT gradients of a plain column that reads them as extra inputs: the states of the same
    step (stage_lag=0) or of the step before (stage_lag=1), from the reference's own forward
    pass of the frozen columns. Stage 1 starts at step 10 from zero state and traces."""
    rng = np.random.default_rng(11)
    model = ColumnarRegressor(n_columns=4, columns_per_stage=2, steps_per_stage=10,
                              step_size=0.0, normalize=False, init_scale=1.0, seed=11,
                              stage_lag=stage_lag)
    model.add_features(["a", "b"])
    start = model.state_dict()
    stream = [{"a": float(rng.normal()), "b": float(rng.normal())} for _ in range(25)]
    for x in stream:
        model.learn_one(x, 0.0)
    end = model.state_dict()
    assert list(end["stages"]["mode"]) == [1, 1, 2, 2]
    P, SP, ptr = start["parameters"], start["stages"]["weights"], start["stages"]["indptr"]
    xs = dense_inputs(stream, ["a", "b"])
    frozen = np.array([final_state(P[:2], xs[:t + 1])[0] for t in range(len(xs))])  # (T, 2)
    first = 10
    read = frozen[first - 1:-1] if stage_lag else frozen[first:]
    inputs = np.concatenate([xs[first:], read], axis=1)  # (T - 10, 2 + 2)
    augmented = np.zeros((2, 4, 6))
    for a, i in enumerate((2, 3)):
        augmented[a, :, :2] = P[i, :, :2]
        augmented[a, :, 2:4] = SP[ptr[i]:ptr[i + 1]].T  # rows: frozen columns 0, 1
        augmented[a, :, 4:] = P[i, :, 2:]  # self-recurrent weight, bias
    h, _ = final_state(augmented, inputs)
    np.testing.assert_allclose(end["h"][2:], h, rtol=1e-12, atol=1e-14)
    grad = bptt(augmented, inputs, np.ones(2), np.zeros(2))
    trace = end["trace_h"][2:]
    stage_trace = np.stack([end["stages"]["trace_h"][ptr[i]:ptr[i + 1]].T for i in (2, 3)])
    assert _max_relative_error(trace[:, :, :2], grad[:, :, :2]) < 1e-6
    assert _max_relative_error(trace[:, :, 2:], grad[:, :, 4:]) < 1e-6
    assert _max_relative_error(stage_trace, grad[:, :, 2:4]) < 1e-6
