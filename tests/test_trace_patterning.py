"""The trace-patterning stream and the truncated-BPTT baseline."""

import itertools

import numpy as np
import pytest

from streamlearn.baselines import TruncatedBPTTTD
from streamlearn.datasets import TracePatterning


def test_stream_structure():
    stream = TracePatterning(isi=(24, 36), iti=(80, 120), seed=3, n=20_000)
    valid = set(stream.valid_patterns())
    assert len(valid) == 10 and all(len(p) == 3 for p in valid)
    rows = list(stream)
    assert len(rows) == 20_000
    assert all(len(x) == 12 for x, _, _ in rows)
    cs_steps = [t for t, (x, _, _) in enumerate(rows) if any(x[f"cs{i}"] for i in range(6))]
    us_steps = [t for t, (x, _, _) in enumerate(rows) if x["us"]]
    for t in cs_steps:  # a one-step pulse of exactly 3 of the 6 bits
        assert sum(rows[t][0][f"cs{i}"] for i in range(6)) == 3
    gaps = np.diff(cs_steps)
    assert gaps.min() >= 24 + 80 and gaps.max() <= 36 + 120
    for t in us_steps:  # every US follows a valid pattern after 24..36 steps
        cs = max(c for c in cs_steps if c < t)
        assert 24 <= t - cs <= 36
        assert tuple(i for i in range(6) if rows[cs][0][f"cs{i}"]) in valid
        assert rows[t][1] == 1.0  # the cumulant is the US bit
        assert rows[t - 1][2] == pytest.approx(1.0) and rows[t][2] == 0.0
        assert rows[cs][2] == pytest.approx(0.9 ** (t - cs - 1))
    for k in range(1, 6):  # distractor k on with probability 1/(10k)
        rate = np.mean([x[f"d{k}"] for x, _, _ in rows])
        assert rate == pytest.approx(1 / (10 * k), rel=0.2)


def test_reference_levels():
    returns = np.array([g for _, _, g in itertools.islice(TracePatterning(seed=0), 300_000)])
    assert np.mean(returns ** 2) == pytest.approx(0.020, abs=0.002)  # "always 0"
    assert np.var(returns) == pytest.approx(0.0187, abs=0.002)       # "best constant"


def test_truncated_gradient_is_exact_within_the_window():
    """With lambda = 0 and step size 0 the eligibility is the truncated gradient of V; with a
    window longer than the sequence it equals finite differences of V through the kernel."""
    rng = np.random.default_rng(0)
    xs = [{"a": float(rng.normal()), "b": float(rng.normal())} for _ in range(6)]

    def value(perturb=None):
        model = TruncatedBPTTTD(["a", "b"], hidden=3, truncation=10, step_size=0.0,
                                lambda_=0.0, init_scale=0.8, seed=1)
        model._arrays["w"][:] = [0.5, -1.0, 2.0]
        if perturb is not None:
            model._arrays["W"][perturb[0]] += perturb[1]
        for x in xs:
            v = model.learn_one(x, 0.0)
        return v, model

    _, model = value()
    grad = model._arrays["E"]
    eps = 1e-6
    for idx in itertools.product(range(4), range(3), range(2 + 3 + 1)):
        fd = (value((idx, eps))[0] - value((idx, -eps))[0]) / (2 * eps)
        assert grad[idx] == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_full_rtrl_baseline_matches_finite_differences():
    from streamlearn.baselines import FullRTRL

    rng = np.random.default_rng(1)
    xs = rng.normal(size=(5, 2))

    def final_h(W=None):
        net = FullRTRL(2, 3, seed=2)
        if W is not None:
            net.W = W
        for x in xs:
            h = net.step(x)
        return h, net

    h, net = final_h()
    eps = 1e-6
    for idx in np.ndindex(net.W.shape):
        up, down = net.W.copy(), net.W.copy()
        up[idx] += eps
        down[idx] -= eps
        fd = (final_h(up)[0] - final_h(down)[0]) / (2 * eps)
        flat = np.ravel_multi_index(idx, net.W.shape)
        np.testing.assert_allclose(net.TH[:, flat], fd, rtol=1e-5, atol=1e-9)
