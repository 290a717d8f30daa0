"""How good is the online gradient estimate? Compare it with the exact gradient.

For a learner configuration and a sequence, :func:`gradient_fidelity` holds the recurrent
parameters fixed, sums the learner's own per-step estimates over the sequence, and computes
the exact gradient of the same summed loss by reverse-mode differentiation through the whole
sequence (BPTT, float64, lateral connections included). In meta-gradient mode the head keeps
learning by LMS during the sequence and the exact meta-gradient differentiates through that
unrolled inner loop too.

The estimate is exact for a plain columnar network (no lateral connections, no meta mode);
otherwise the report says how far off it is.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gradient_fidelity", "exact_gradient", "compare"]


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _dense_laterals(state: dict) -> np.ndarray:
    """(4, n, n) matrices L[z, i, j]: weight of h_j(t-1) in gate z of column i."""
    n = state["parameters"].shape[0]
    lat = state["lateral"]
    indptr, indices = np.asarray(lat["indptr"]), np.asarray(lat["indices"])
    receivers = np.repeat(np.arange(n), np.diff(indptr))
    dense = np.zeros((4, n, n))
    dense[:, receivers, indices] = np.asarray(lat["weights"]).T
    return dense


def _forward(P, L, xs, h0, c0):
    """Run the network (inputs xs (T, m), from states h0, c0); per-step records for BPTT."""
    m = P.shape[2] - 2
    h, c = h0.copy(), c0.copy()
    records = []
    for x in xs:
        pre = P[:, :, :m] @ x + P[:, :, m] * h[:, None] + P[:, :, m + 1] + (L @ h).T
        i, f, o = _sigmoid(pre[:, 0]), _sigmoid(pre[:, 1]), _sigmoid(pre[:, 2])
        g = np.tanh(pre[:, 3])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        records.append((x, h, c, i, f, o, g, c_new, h_new))
        h, c = h_new, c_new
    return records


def _backward(P, L, records, h_bar):
    """Gradient of sum_t h_bar[t] . h_t with respect to P and the dense laterals L."""
    m = P.shape[2] - 2
    grad_p, grad_l = np.zeros_like(P), np.zeros_like(L)
    dh, dc = np.zeros(P.shape[0]), np.zeros(P.shape[0])
    for t in range(len(records) - 1, -1, -1):
        x, h_prev, c_prev, i, f, o, g, c, _ = records[t]
        dh = dh + h_bar[t]
        tc = np.tanh(c)
        d_o = dh * tc
        dc = dc + dh * o * (1.0 - tc * tc)
        dpre = np.stack([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                         d_o * o * (1 - o), dc * i * (1 - g * g)], axis=1)  # (n, 4)
        grad_p[:, :, :m] += dpre[:, :, None] * x[None, None, :]
        grad_p[:, :, m] += dpre * h_prev[:, None]
        grad_p[:, :, m + 1] += dpre
        grad_l += dpre.T[:, :, None] * h_prev[None, None, :]
        dh = (dpre * P[:, :, m]).sum(axis=1) + np.einsum("zij,iz->j", L, dpre)
        dc = dc * f
    return grad_p, grad_l


def exact_gradient(state: dict, xs: np.ndarray, ys: np.ndarray,
                   head_step_size: float | None = None) -> np.ndarray:
    """Exact gradient of sum_t 1/2 (y_t - w_t . h_t - b)^2 with respect to the recurrent
    parameters of ``state`` (a ``state_dict()``; raw inputs xs (T, m) in ``feature_names``
    order), held fixed over the sequence, starting from the state's h and c.

    ``head_step_size`` None: the head is fixed. A number: the head weights learn by LMS,
    w_{t+1} = w_t + a delta_t h_t, and the gradient runs through that inner loop too.
    Returns the flat vector [parameters.ravel(), lateral weights.ravel()].
    """
    P = np.asarray(state["parameters"], dtype=float)
    L = _dense_laterals(state)
    records = _forward(P, L, np.asarray(xs, dtype=float), np.asarray(state["h"], dtype=float),
                       np.asarray(state["c"], dtype=float))
    hs = [r[8] for r in records]
    w, b = np.asarray(state["head_weights"], dtype=float).copy(), float(state["head_bias"])
    weights, deltas = [], []
    for h, y in zip(hs, ys):  # the forward pass of the (possibly learning) head
        delta = y - w @ h - b
        weights.append(w.copy())
        deltas.append(delta)
        if head_step_size is not None:
            w = w + head_step_size * delta * h
    h_bar = [None] * len(hs)
    w_bar = np.zeros_like(w)  # adjoint of w_{t+1}
    for t in range(len(hs) - 1, -1, -1):
        a = head_step_size or 0.0
        delta_bar = deltas[t] + a * hs[t] @ w_bar
        h_bar[t] = a * deltas[t] * w_bar - weights[t] * delta_bar
        w_bar = w_bar - hs[t] * delta_bar
    grad_p, grad_l = _backward(P, L, records, h_bar)
    lat = state["lateral"]
    n = P.shape[0]
    receivers = np.repeat(np.arange(n), np.diff(np.asarray(lat["indptr"])))
    grad_lat = grad_l[:, receivers, np.asarray(lat["indices"])].T  # (nnz, 4)
    return np.concatenate([grad_p.ravel(), grad_lat.ravel()])


def _online_estimate(model, xs: list, ys: list) -> np.ndarray:
    """The learner's own estimate of the same summed gradient, parameters held fixed."""
    total = None
    for x, y in zip(xs, ys):
        before = model.state_dict()
        prediction = model.predict_one(x)
        model.learn_one(x, y)
        after = model.state_dict()
        delta = y - prediction
        w = before["head_weights"]
        th = np.concatenate([after["trace_h"].ravel(), after["lateral"]["trace_h"].ravel()])
        column = _column_of_each_parameter(after)
        g = -delta * w[column] * th
        if "meta" in before:
            tw = np.concatenate([before["meta"]["trace_w"].ravel(),
                                 before["meta"]["lateral_trace_w"].ravel()])
            g = g - delta * after["h"][column] * tw
        total = g if total is None else total + g
    return total


def _column_of_each_parameter(state: dict) -> np.ndarray:
    n, _, k = state["parameters"].shape
    indptr = np.asarray(state["lateral"]["indptr"])
    own = np.repeat(np.arange(n), 4 * k)
    lateral = np.repeat(np.repeat(np.arange(n), np.diff(indptr)), 4)
    return np.concatenate([own, lateral])


def compare(estimate: np.ndarray, exact: np.ndarray, negligible: float = 1e-6) -> dict:
    """Cosine similarity, sign agreement over entries with |exact| above ``negligible`` times
    the largest, mean absolute error and relative norm error of an estimate."""
    estimate, exact = np.ravel(estimate), np.ravel(exact)
    norm_e, norm_x = np.linalg.norm(estimate), np.linalg.norm(exact)
    significant = np.abs(exact) > negligible * np.abs(exact).max() if norm_x else \
        np.zeros(exact.shape, bool)
    return {
        "cosine": float(estimate @ exact / (norm_e * norm_x)) if norm_e and norm_x else float("nan"),
        "sign_agreement": float(np.mean(np.sign(estimate[significant])
                                        == np.sign(exact[significant])))
        if significant.any() else float("nan"),
        "abs_error": float(np.mean(np.abs(estimate - exact))),
        "relative_error": float(np.linalg.norm(estimate - exact) / norm_x) if norm_x
        else float("nan"),
        "n_parameters": int(exact.size),
        "n_significant": int(significant.sum()),
    }


def gradient_fidelity(model, stream) -> dict:
    """Compare ``model``'s online gradient estimate with the exact gradient on ``stream``.

    ``model`` is a :class:`~streamlearn.ColumnarRegressor` with ``normalize=False`` (the
    exact gradient is of the raw squared error); ``stream`` an iterable of (x, y). The model
    is not changed: a copy runs the sequence with step_size 0 (recurrent parameters fixed;
    in meta mode the head still learns by LMS, as the estimate assumes), from the model's
    current column states taken as given (traces start at 0). Features new to the model are
    added first, so both sides see the same parameters. Returns :func:`compare`'s report.
    """
    if model.normalize:
        raise ValueError("gradient_fidelity needs normalize=False: the exact gradient is of "
                         "the raw squared error")
    pairs = list(stream)
    if not pairs:
        raise ValueError("the stream is empty")
    params = dict(model._get_params(), step_size=0.0)
    probe = type(model)(**params)
    state = dict(model.state_dict(), params=params)
    probe.load_state_dict(state)
    probe.add_features([name for x, _ in pairs for name in x])
    start = probe.state_dict()
    for traces in (start, start["lateral"], start.get("meta", {})):
        for key in ("trace_h", "trace_c", "trace_w", "lateral_trace_w"):
            if key in traces:
                traces[key][...] = 0.0
    probe.load_state_dict(start)
    names = probe.feature_names
    xs, ys = [x for x, _ in pairs], [float(y) for _, y in pairs]
    estimate = _online_estimate(probe, xs, ys)
    dense = np.array([[x.get(name, 0.0) for name in names] for x in xs], dtype=float)
    exact = exact_gradient(start, dense, np.array(ys),
                           head_step_size=model.head_step_size if model.meta else None)
    return compare(estimate, exact)
