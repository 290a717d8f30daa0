"""An independent float64 reference: a numpy columnar LSTM and backprop through time.

Written from the equations of PAPER.md section 2, vectorised over columns, sharing no code
with the kernel. Used only by the tests.
"""

import numpy as np


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def forward(P, xs):
    """Run columns with parameters P (n, 4, m + 2) over inputs xs (T, m) from h = c = 0.

    Returns the per-step records needed by :func:`bptt` and the final (h, c).
    """
    n, _, k = P.shape
    m = k - 2
    h, c = np.zeros(n), np.zeros(n)
    records = []
    for x in xs:
        pre = P[:, :, :m] @ x + P[:, :, m] * h[:, None] + P[:, :, m + 1]
        i, f, o = _sigmoid(pre[:, 0]), _sigmoid(pre[:, 1]), _sigmoid(pre[:, 2])
        g = np.tanh(pre[:, 3])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        records.append((x, h, c, i, f, o, g, c_new))
        h, c = h_new, c_new
    return records, h, c


def bptt(P, xs, seed_h, seed_c):
    """Gradient of sum_i (seed_h_i h_T,i + seed_c_i c_T,i) with respect to P, by reverse mode.

    Columns share no parameters, so seeding every column with 1 gives each column's own
    dh_T,i/dP_i (or dc_T,i/dP_i) in one pass.
    """
    records, _, _ = forward(P, xs)
    m = P.shape[2] - 2
    grad = np.zeros_like(P)
    dh, dc = np.array(seed_h, dtype=float), np.array(seed_c, dtype=float)
    for x, h_prev, c_prev, i, f, o, g, c in reversed(records):
        tc = np.tanh(c)
        d_o = dh * tc
        dc = dc + dh * o * (1.0 - tc * tc)
        dpre = np.stack([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                         d_o * o * (1 - o), dc * i * (1 - g * g)], axis=1)  # (n, 4)
        grad[:, :, :m] += dpre[:, :, None] * x[None, None, :]
        grad[:, :, m] += dpre * h_prev[:, None]
        grad[:, :, m + 1] += dpre
        dh = (dpre * P[:, :, m]).sum(axis=1)
        dc = dc * f
    return grad


def final_state(P, xs):
    _, h, c = forward(P, xs)
    return h, c
