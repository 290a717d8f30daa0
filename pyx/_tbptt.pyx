# cython: language_level=3
"""Baseline: a dense LSTM learning TD(lambda) online with truncated BPTT.

H fully connected LSTM units read m inputs and all H previous states; V = w . h + b. Each step
the gradient of V(S_t) is backpropagated through the last ``k`` steps only (truncation),
accumulated into eligibility traces e <- gamma lambda e + grad, and every parameter takes the
same RMSProp-normalised TD step as ColumnarTD. Parameter layout: ``W`` (4, H, m + H + 1), gates
input, forget, output, candidate; per row the m input weights, the H recurrent weights, the
bias. Cost per step: 4H(m + H + 1) multiply-adds forward, about twice that per truncation step
backward.
"""
from libc.math cimport sqrt, tanh

from _math cimport sigmoid


cdef enum:
    # the head's scalars (``scalars`` of streamlearn.baselines.TruncatedBPTTTD)
    H_BIAS = 0
    H_BIAS_E = 1      # eligibility of the bias
    H_BIAS_V = 2      # RMSProp moment of the bias
    H_V_PREV = 3      # V(S_t) of the previous step
    H_HAS_PREV = 4    # 1 when H_V_PREV is set


cdef class TruncatedLSTM:
    """State and step of the truncated-BPTT TD(lambda) learner (arrays owned by Python)."""

    cdef double[:, :, ::1] W, G, E, V    # parameters, gradient scratch, eligibility, RMSProp
    cdef double[::1] w, ew, vw, scal     # head; scal: indexed by the H_* enum
    cdef double[:, ::1] xs, hs, cs       # ring buffers: inputs, states (k + 1 slots)
    cdef double[:, :, ::1] acts          # (k + 1, 4, H) gate activations
    cdef double[::1] dh, dc, dh_prev, dpre
    cdef Py_ssize_t H, m, k, t
    cdef double alpha, gamma, lam, beta, eps

    def __init__(self, dict a, double step_size, double gamma, double lambda_, Py_ssize_t k,
                 double beta=0.9999, double eps=1e-8):
        import numpy as np
        self.W, self.E, self.V = a["W"], a["E"], a["V"]
        self.w, self.ew, self.vw, self.scal = a["w"], a["ew"], a["vw"], a["scalars"]
        self.xs, self.hs, self.cs, self.acts = a["xs"], a["hs"], a["cs"], a["acts"]
        self.H = self.W.shape[1]
        self.m = self.W.shape[2] - self.H - 1
        self.k = k
        self.t = 0
        self.G = np.zeros_like(a["W"])
        self.dh = np.zeros(self.H)
        self.dc = np.zeros(self.H)
        self.dh_prev = np.zeros(self.H)
        self.dpre = np.zeros(4 * self.H)
        self.alpha, self.gamma, self.lam, self.beta, self.eps = step_size, gamma, lambda_, beta, eps

    def step(self, const double[::1] x, double cumulant):
        """Advance with x, learn from the cumulant observed with it; return V(S_t+1)."""
        cdef Py_ssize_t H = self.H, m = self.m, s, prev, j, u, z, n_back, back
        cdef double pre, value, delta, g, v, gl = self.gamma * self.lam, head_alpha
        with nogil:
            s = (self.t + 1) % (self.k + 1)        # slot of the new step
            prev = self.t % (self.k + 1)           # slot of the previous state
            for j in range(m):
                self.xs[s, j] = x[j]
            for u in range(H):
                for z in range(4):
                    pre = self.W[z, u, m + H]
                    for j in range(m):
                        pre = pre + self.W[z, u, j] * x[j]
                    for j in range(H):
                        pre = pre + self.W[z, u, m + j] * self.hs[prev, j]
                    self.acts[s, z, u] = tanh(pre) if z == 3 else sigmoid(pre)
                self.cs[s, u] = self.acts[s, 1, u] * self.cs[prev, u] + self.acts[s, 0, u] * self.acts[s, 3, u]
            value = self.scal[H_BIAS]
            for u in range(H):
                self.hs[s, u] = self.acts[s, 2, u] * tanh(self.cs[s, u])
                value = value + self.w[u] * self.hs[s, u]
            # gradient of V(S_t+1) through the last k steps (truncated BPTT), into G
            self.G[:, :, :] = 0.0
            for u in range(H):
                self.dh[u] = self.w[u]
                self.dc[u] = 0.0
            n_back = self.k if self.t + 1 >= self.k else self.t + 1
            for back in range(n_back):
                s = (self.t + 1 - back) % (self.k + 1)
                prev = (self.t - back) % (self.k + 1)
                self._backward_step(s, prev, back == n_back - 1)
            # TD step with the old eligibilities, then accumulate the new gradient
            delta = 0.0
            if self.scal[H_HAS_PREV] != 0.0:
                delta = cumulant + self.gamma * value - self.scal[H_V_PREV]
                for z in range(4):
                    for u in range(H):
                        for j in range(m + H + 1):
                            g = delta * self.E[z, u, j]
                            v = self.beta * self.V[z, u, j] + (1.0 - self.beta) * g * g
                            self.V[z, u, j] = v
                            self.W[z, u, j] += self.alpha * g / (sqrt(v) + self.eps)
                head_alpha = self.alpha / H
                for u in range(H):
                    g = delta * self.ew[u]
                    v = self.beta * self.vw[u] + (1.0 - self.beta) * g * g
                    self.vw[u] = v
                    self.w[u] += head_alpha * g / (sqrt(v) + self.eps)
                g = delta * self.scal[H_BIAS_E]
                v = self.beta * self.scal[H_BIAS_V] + (1.0 - self.beta) * g * g
                self.scal[H_BIAS_V] = v
                self.scal[H_BIAS] += head_alpha * g / (sqrt(v) + self.eps)
            s = (self.t + 1) % (self.k + 1)
            for z in range(4):
                for u in range(H):
                    for j in range(m + H + 1):
                        self.E[z, u, j] = gl * self.E[z, u, j] + self.G[z, u, j]
            for u in range(H):
                self.ew[u] = gl * self.ew[u] + self.hs[s, u]
            self.scal[H_BIAS_E] = gl * self.scal[H_BIAS_E] + 1.0
            self.scal[H_V_PREV] = value
            self.scal[H_HAS_PREV] = 1.0
            self.t += 1
        return value

    cdef void _backward_step(self, Py_ssize_t s, Py_ssize_t prev, bint last) noexcept nogil:
        """Backpropagate (dh, dc) of slot s into the parameter gradient and the previous
        state's (dh, dc); the last truncated step drops what flows further back."""
        cdef Py_ssize_t H = self.H, m = self.m, u, j, z
        cdef double tc, do_, dcu, ai, af, ao, ag
        for u in range(H):
            ai, af, ao, ag = self.acts[s, 0, u], self.acts[s, 1, u], self.acts[s, 2, u], self.acts[s, 3, u]
            tc = tanh(self.cs[s, u])
            do_ = self.dh[u] * tc
            dcu = self.dc[u] + self.dh[u] * ao * (1.0 - tc * tc)
            self.dpre[u] = dcu * ag * ai * (1.0 - ai)
            self.dpre[H + u] = dcu * self.cs[prev, u] * af * (1.0 - af)
            self.dpre[2 * H + u] = do_ * ao * (1.0 - ao)
            self.dpre[3 * H + u] = dcu * ai * (1.0 - ag * ag)
            self.dc[u] = dcu * af
        for j in range(H):
            self.dh_prev[j] = 0.0
        for z in range(4):
            for u in range(H):
                for j in range(m):
                    self.G[z, u, j] += self.dpre[z * H + u] * self.xs[s, j]
                for j in range(H):
                    self.G[z, u, m + j] += self.dpre[z * H + u] * self.hs[prev, j]
                    if not last:
                        self.dh_prev[j] += self.dpre[z * H + u] * self.W[z, u, m + j]
                self.G[z, u, m + H] += self.dpre[z * H + u]
        for j in range(H):
            self.dh[j] = self.dh_prev[j]
