"""The kernel's own vectorised logistic and tanh (pyx/_loops.h) against libm, through numpy."""

import numpy as np

from streamlearn._columnar import activations


def _ulps(values, reference):
    return np.abs(values - reference) / np.spacing(np.abs(reference))


def test_logistic_and_tanh_within_a_few_ulps_of_libm():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.0, scale, 20_000)
                        for scale in (1e-12, 1e-6, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 300.0)]
                       + [np.array([0.25, -0.25, np.nextafter(0.25, 0), 708.0, 709.5, -700.0])])
    x = x[x > -700.0]  # below, logistic(x) < 1e-304: compared in absolute terms below
    logistic, tanh = activations(x)
    with np.errstate(over="ignore"):
        reference = 1.0 / (1.0 + np.exp(-x))
    assert _ulps(logistic, reference).max() <= 4
    assert _ulps(tanh, np.tanh(x)).max() <= 3
    assert np.all(np.sign(tanh) == np.sign(x))


def test_activations_at_the_edges():
    logistic, tanh = activations(np.array([0.0, -0.0, np.inf, -np.inf, -800.0, np.nan]))
    assert logistic[:3].tolist() == [0.5, 0.5, 1.0]
    assert 0.0 <= logistic[3] < 1e-300 and 0.0 <= logistic[4] < 1e-300
    assert tanh[:4].tolist() == [0.0, 0.0, 1.0, -1.0]
    assert np.signbit(tanh[1])
    assert np.isnan(logistic[5]) and np.isnan(tanh[5])  # NaN propagates to the finite check
