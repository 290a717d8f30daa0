"""ColumnarTD: the TD(lambda) convention worked by hand, stages, freezing, exactness with
stages, episode resets and state round trips."""

import itertools

import numpy as np
import pytest

from reference import bptt, forward
from streamlearn import ColumnarRegressor, ColumnarTD
from streamlearn.datasets import TracePatterning


def _load(model, names, rng, head=None):
    n, m = model.n_columns, len(names)
    model.add_features(list(names))
    state = model.state_dict()
    state["parameters"] = rng.uniform(-1, 1, size=(n, 4, m + 2))
    state["head_weights"] = rng.uniform(-1, 1, size=n) if head is None else head
    state["head_bias"] = 0.3
    model.load_state_dict(state)
    return state


def test_td_convention_by_hand():
    """delta_1 = c_2 + gamma V(S_2) - V(S_1): the cumulant given with x_2 pairs with the
    prediction made at x_1; parameters move by step * delta * eligibility, the head's step
    divided by the number of columns; eligibilities e = gamma lambda e + w_i dh_i/dp."""
    rng = np.random.default_rng(0)
    alpha, gamma, lam, n = 0.1, 0.9, 0.8, 2
    model = ColumnarTD(n_columns=n, step_size=alpha, gamma=gamma, lambda_=lam, optimizer="sgd",
                       normalize=False, seed=0)
    s0 = _load(model, ["a", "b"], rng)
    P0, w0, b0 = s0["parameters"], s0["head_weights"], s0["head_bias"]
    xs = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]])
    cs = [5.0, 1.0, -2.0]

    h1 = forward(P0, xs[:1])[1]  # states from the independent numpy forward
    h2 = forward(P0, xs[:2])[1]
    V1, V2 = w0 @ h1 + b0, w0 @ h2 + b0
    TH1 = bptt(P0, xs[:1], np.ones(n), np.zeros(n))
    TH2 = bptt(P0, xs[:2], np.ones(n), np.zeros(n))

    v = model.predict_one({"a": 1.0, "b": 0.0})
    assert v == pytest.approx(V1, rel=1e-12)
    model.learn_one({"a": 1.0, "b": 0.0}, cs[0])
    assert model.td_error is None  # an episode's first step has nothing to learn from
    after1 = model.state_dict()
    np.testing.assert_array_equal(after1["parameters"], P0)
    np.testing.assert_allclose(after1["td"]["eligibility"], w0[:, None, None] * TH1, rtol=1e-12)

    assert model.predict_one({"a": 0.5, "b": -1.0}) == pytest.approx(V2, rel=1e-12)
    model.learn_one({"a": 0.5, "b": -1.0}, cs[1])
    delta1 = cs[1] + gamma * V2 - V1
    assert model.td_error == pytest.approx(delta1, rel=1e-12)
    after2 = model.state_dict()
    e1 = w0[:, None, None] * TH1
    np.testing.assert_allclose(after2["parameters"], P0 + alpha * delta1 * e1, rtol=1e-12)
    np.testing.assert_allclose(after2["head_weights"], w0 + alpha / n * delta1 * h1, rtol=1e-12)
    assert after2["head_bias"] == pytest.approx(b0 + alpha / n * delta1 * 1.0, rel=1e-12)
    np.testing.assert_allclose(after2["td"]["eligibility"],
                               gamma * lam * e1 + w0[:, None, None] * TH2, rtol=1e-10)
    np.testing.assert_allclose(after2["td"]["head_eligibility"], gamma * lam * h1 + h2,
                               rtol=1e-12)


def test_episode_reset_drops_the_boundary():
    model = ColumnarTD(n_columns=3, seed=1)
    for t in range(5):
        model.learn_one({"a": float(t)}, 1.0)
    model.reset_state()
    state = model.state_dict()
    assert not np.any(state["h"]) and not np.any(state["td"]["eligibility"])
    assert state["td"]["has_previous"] == 0.0
    before = model.state_dict()["parameters"]
    model.learn_one({"a": 1.0}, 100.0)  # first step of the new episode: no TD error
    assert model.td_error is None
    np.testing.assert_array_equal(model.state_dict()["parameters"], before)


def test_stage_schedule_and_freezing():
    model = ColumnarTD(n_columns=6, columns_per_stage=2, steps_per_stage=5, step_size=0.05,
                       seed=2)
    stream = itertools.islice(TracePatterning(seed=1), 40)
    snapshots = []
    for t, (x, c, _) in enumerate(stream, start=1):
        model.learn_one(x, c)
        snapshots.append(model.state_dict())
        mode = list(snapshots[-1]["stages"]["mode"])
        stage = min(t // 5, 2)
        assert model.stage == stage
        assert mode == [1] * (2 * stage) + [2, 2] + [0] * (4 - 2 * stage)
    # frozen columns never change again; columns not yet added stay at 0
    for t in range(10, 40):
        np.testing.assert_array_equal(snapshots[t]["parameters"][:2],
                                      snapshots[4]["parameters"][:2])
    assert not np.any(snapshots[8]["h"][4:]) and not np.any(snapshots[8]["head_weights"][4:])
    assert np.any(snapshots[-1]["stages"]["weights"])


def test_forget_bias_shifts_only_the_initial_forget_gate_biases():
    shifted = ColumnarTD(n_columns=5, forget_bias=1.0, seed=7)
    plain = ColumnarTD(n_columns=5, forget_bias=0.0, seed=7)
    for model in (shifted, plain):
        model.learn_one({"a": 0.0}, 0.0)  # one input, so that P is (n, 4, 3)
    a, b = shifted.state_dict()["parameters"], plain.state_dict()["parameters"]
    np.testing.assert_allclose(a[:, 1, -1] - b[:, 1, -1], 1.0)  # forget gate, bias
    a[:, 1, -1] = b[:, 1, -1]
    np.testing.assert_array_equal(a, b)
    assert ColumnarTD().forget_bias == 1.0


def test_normalisation_statistics_and_their_freezing():
    """Input statistics: exact mean and variance for the first 1 / (1 - norm_decay) steps,
    exponential after (numpy, independently); a column's state statistics freeze with it."""
    decay, steps = 0.9, 60
    model = ColumnarTD(n_columns=4, columns_per_stage=2, steps_per_stage=20, normalize=True,
                       norm_decay=decay, seed=3)
    xs = np.random.default_rng(4).normal(2.0, 3.0, size=steps)
    mean = var = 0.0
    frozen = None
    for t, value in enumerate(xs):
        model.learn_one({"a": float(value)}, 0.0)
        r = max(1.0 / (t + 1), 1.0 - decay)
        d = value - mean
        mean, var = mean + r * d, (1.0 - r) * (var + r * d * d)
        if t + 1 == 20:
            frozen = model.state_dict()["stages"]
    state = model.state_dict()
    assert state["normalizer"]["x_mean"][0] == pytest.approx(mean, rel=1e-12)
    assert state["normalizer"]["x_var"][0] == pytest.approx(var, rel=1e-12)
    assert xs[:10].mean() != pytest.approx(mean)  # the exponential phase was reached
    np.testing.assert_array_equal(state["stages"]["h_mean"][:2], frozen["h_mean"][:2])
    np.testing.assert_array_equal(state["stages"]["h_var"][:2], frozen["h_var"][:2])
    assert np.all(state["stages"]["h_mean"][2:4] != frozen["h_mean"][2:4])


@pytest.mark.parametrize("stage_lag", [0, 1])
@pytest.mark.parametrize("learner", ["regressor", "td"])
def test_traces_exact_for_columns_reading_frozen_stages(learner, stage_lag):
    """With step size 0, the learning stage's traces equal finite differences of h_T through
    the compiled network, including the weights that read the frozen stage (its states of
    the same step, or with stage_lag=1 of the step before)."""
    rng = np.random.default_rng(3)
    common = dict(n_columns=4, columns_per_stage=2, steps_per_stage=6, step_size=0.0,
                  normalize=False, seed=3, init_scale=1.0, stage_lag=stage_lag)
    model = ColumnarRegressor(**common) if learner == "regressor" else ColumnarTD(**common)
    stream = [{"a": float(rng.normal()), "b": float(rng.normal())} for _ in range(15)]
    model.add_features(["a", "b"])
    start = model.state_dict()

    def run(state):
        clone = type(model).from_state_dict(state)
        for x in stream:
            clone.learn_one(x, 0.5)
        return clone.state_dict()

    end = run(start)
    assert list(end["stages"]["mode"]) == [1, 1, 2, 2]
    eps = 1e-6
    for column in (2, 3):
        for idx in itertools.product(range(4), range(4)):  # gates x (a, b, u, bias)
            fd = []
            for sign in (1, -1):
                s = {**start, "parameters": start["parameters"].copy()}
                s["parameters"][(column, *idx)] += sign * eps
                fd.append(run(s)["h"][column])
            assert end["trace_h"][(column, *idx)] == pytest.approx(
                (fd[0] - fd[1]) / (2 * eps), rel=1e-5, abs=1e-9)
        for row in range(end["stages"]["indptr"][column], end["stages"]["indptr"][column + 1]):
            for z in range(4):
                fd = []
                for sign in (1, -1):
                    s = {**start, "stages": dict(start["stages"])}
                    s["stages"]["weights"] = start["stages"]["weights"].copy()
                    s["stages"]["weights"][row, z] += sign * eps
                    fd.append(run(s)["h"][column])
                assert end["stages"]["trace_h"][row, z] == pytest.approx(
                    (fd[0] - fd[1]) / (2 * eps), rel=1e-5, abs=1e-9)


def test_round_trip_in_the_middle_of_a_stage():
    model = ColumnarTD(n_columns=8, columns_per_stage=2, steps_per_stage=10, normalize=True,
                       seed=4)
    data = list(itertools.islice(TracePatterning(seed=2), 70))
    for x, c, _ in data[:25]:  # stage 2 of 4, half way; the rest crosses into stage 3
        model.learn_one(x, c)
    copy = ColumnarTD.from_bytes(model.to_bytes())
    assert copy.stage == model.stage == 2
    out_a, out_b = [], []
    for x, c, _ in data[25:]:
        out_a.append(model.predict_one(x))
        model.learn_one(x, c)
        out_b.append(copy.predict_one(x))
        copy.learn_one(x, c)
    assert out_a == out_b
    assert model.to_bytes() == copy.to_bytes()


@pytest.mark.parametrize("params, match", [
    ({"gamma": 1.0}, "gamma"), ({"lambda_": 1.5}, "lambda_"), ({"gamma": -0.1}, "gamma"),
    ({"columns_per_stage": 3}, "divide"), ({"steps_per_stage": 0}, "steps_per_stage"),
    ({"var_floor": -1.0}, "var_floor"), ({"norm_decay": 1.0}, "norm_decay"),
    ({"forget_bias": float("nan")}, "forget_bias"),
])
def test_bad_td_configurations(params, match):
    with pytest.raises(ValueError, match=match):
        ColumnarTD(**params)


def test_td_error_on_both_step_paths():
    """The TD error is None at an episode's first step and a float after it, whether the
    step runs in one kernel call or on the general path (a new feature, a stage switch)."""
    model = ColumnarTD(n_columns=4, columns_per_stage=2, steps_per_stage=3, seed=0)
    plain = ColumnarTD(n_columns=4, seed=0)
    for learner in (model, plain):
        errors = []
        for t in range(8):
            x = {"a": float(t)} if t % 4 else {"a": float(t), f"new{t}": 1.0}
            learner.learn_one(x, 1.0)
            errors.append(learner.td_error)
        assert errors[0] is None
        assert all(type(e) is float and e != 0.0 for e in errors[1:]), errors
        learner.reset_state()
        learner.learn_one({"a": 1.0}, 1.0)
        assert learner.td_error is None


@pytest.mark.parametrize("stage_lag", [0, 1])
def test_a_stage_reads_the_frozen_states_of_the_step_its_lag_names(stage_lag):
    """One step by hand (numpy, from the state dict): a learning column's pre-activations
    add its stage weights times the frozen columns' states of this step (stage_lag=0) or of
    the step before (stage_lag=1)."""
    model = ColumnarRegressor(n_columns=4, columns_per_stage=2, steps_per_stage=5,
                              step_size=0.0, normalize=False, seed=5, init_scale=1.0,
                              stage_lag=stage_lag)
    rng = np.random.default_rng(5)
    for _ in range(8):
        model.learn_one({"a": float(rng.normal())}, 0.0)
    before = model.state_dict()
    x = np.array([0.7])
    model.learn_one({"a": 0.7}, 0.0)
    after = model.state_dict()
    assert list(after["stages"]["mode"]) == [1, 1, 2, 2]
    P, SP, ptr = before["parameters"], before["stages"]["weights"], before["stages"]["indptr"]
    read = before["h"] if stage_lag else after["h"]  # the frozen columns 0 and 1
    for i in (2, 3):
        pre = P[i, :, :1] @ x + P[i, :, 1] * before["h"][i] + P[i, :, 2]
        for k, row in enumerate(range(ptr[i], ptr[i + 1])):
            pre = pre + SP[row] * read[k]
        gi, gf, go = (1 / (1 + np.exp(-pre[z])) for z in range(3))
        c = gf * before["c"][i] + gi * np.tanh(pre[3])
        assert after["c"][i] == pytest.approx(c, rel=1e-12)
        assert after["h"][i] == pytest.approx(go * np.tanh(c), rel=1e-12)
