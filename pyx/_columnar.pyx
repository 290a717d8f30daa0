# cython: language_level=3
"""Columnar LSTM kernel: forward step, per-column RTRL traces and the learning step.

Layout (every array is owned by Python, the kernel only views it):

* ``P``, ``TH``, ``TC``, ``V``: ``(n, 4, K)`` with ``K = m + 2``; gates in the order input,
  forget, output, candidate; along the last axis the m input weights, the self-recurrent
  weight u, the bias. ``TH = dh_i/dp`` and ``TC = dc_i/dp`` for the parameters of column i
  (Javed, White & Sutton 2021); ``V`` is the RMSProp second moment.
* ``h``, ``c``, ``w``, ``vw``: ``(n,)`` column states, head weights and their second moment.
* ``scalars``: head bias, its second moment, target mean, target variance, target count.
* ``x_mean``, ``x_var``, ``x_count``: ``(m,)`` input normalisation statistics.

A call is split in two so that nothing changes on failure:
:meth:`forward` computes the next states into scratch and checks them for non-finite values;
:meth:`commit` then updates traces and parameters in place. Before touching anything, commit
bounds every value it can write from per-column maxima kept by the previous commit; if a
bound exceeds ``LIMIT`` it raises instead, so the in-place loop never has to be undone.
"""
from libc.math cimport exp, fabs, isfinite, sqrt, tanh

cdef enum:
    GATE_I = 0
    GATE_F = 1
    GATE_O = 2
    GATE_G = 3

cdef enum:
    S_BIAS = 0
    S_BIAS_V = 1
    S_Y_MEAN = 2
    S_Y_VAR = 3
    S_Y_COUNT = 4
    N_SCALARS = 5

cdef enum:
    M_TH = 0
    M_TC = 1
    M_P = 2

OPTIMIZERS = ("sgd", "rmsprop")
cdef enum:
    OPT_SGD = 0
    OPT_RMSPROP = 1

# Largest magnitude any stored value may reach; squares of it stay finite.
cdef double LIMIT = 1e150


cdef inline double _sigmoid(double z) noexcept nogil:
    """Logistic function without overflow for large |z|."""
    cdef double e
    if z >= 0:
        return 1.0 / (1.0 + exp(-z))
    e = exp(z)
    return e / (1.0 + e)


cdef inline double _rate(double count, double decay) noexcept nogil:
    """Update rate of the running statistics: the exact mean for the first 1/(1-decay)
    samples, an exponential moving average after."""
    cdef double r = 1.0 / (count + 1.0)
    return r if r > 1.0 - decay else 1.0 - decay


cdef inline double _std(double var, double floor) noexcept nogil:
    """Standard deviation used to scale, with the variance floored."""
    return sqrt(var if var > floor else floor)


cdef inline double _max(double a, double b) noexcept nogil:
    return a if a > b else b


cdef class ColumnarKernel:
    """State views plus the forward and commit steps of a columnar LSTM network."""

    cdef double[:, :, ::1] P, TH, TC, V
    cdef double[::1] h, c, w, vw, scalars, x_mean, x_var, x_count
    # scratch of the pending forward step
    cdef double[::1] xn, new_mean, new_var
    cdef double[:, ::1] gates      # (n, 4) activations
    cdef double[::1] h_new, c_new
    cdef double[:, ::1] maxima     # (n, 3): max |TH|, |TC|, |P| per column
    cdef double y_hat_n, y_hat
    cdef Py_ssize_t n, m
    cdef bint pending
    cdef readonly int optimizer
    cdef readonly double step_size, beta, eps, decay, var_floor
    cdef readonly bint normalize

    def __init__(self, dict arrays, str optimizer, double step_size, bint normalize,
                 double beta=0.9999, double eps=1e-8, double decay=0.9999,
                 double var_floor=1e-8):
        self.P = arrays["P"]
        self.TH = arrays["TH"]
        self.TC = arrays["TC"]
        self.V = arrays["V"]
        self.h = arrays["h"]
        self.c = arrays["c"]
        self.w = arrays["w"]
        self.vw = arrays["vw"]
        self.scalars = arrays["scalars"]
        self.x_mean = arrays["x_mean"]
        self.x_var = arrays["x_var"]
        self.x_count = arrays["x_count"]
        self.n = self.P.shape[0]
        self.m = self.P.shape[2] - 2
        if self.scalars.shape[0] != N_SCALARS:
            raise ValueError(f"scalars must have {N_SCALARS} entries")
        self.optimizer = OPTIMIZERS.index(optimizer)
        self.step_size = step_size
        self.normalize = normalize
        self.beta = beta
        self.eps = eps
        self.decay = decay
        self.var_floor = var_floor
        import numpy as np
        self.xn = np.zeros(self.m)
        self.new_mean = np.zeros(self.m)
        self.new_var = np.zeros(self.m)
        self.gates = np.zeros((self.n, 4))
        self.h_new = np.zeros(self.n)
        self.c_new = np.zeros(self.n)
        self.maxima = np.zeros((self.n, 3))
        self._refresh_maxima()
        self.pending = False

    cdef void _refresh_maxima(self) noexcept nogil:
        """Per-column max |TH|, |TC|, |P| (commit keeps them current after that)."""
        cdef Py_ssize_t i, z, k
        for i in range(self.n):
            self.maxima[i, M_TH] = 0.0
            self.maxima[i, M_TC] = 0.0
            self.maxima[i, M_P] = 0.0
            for z in range(4):
                for k in range(self.m + 2):
                    self.maxima[i, M_TH] = _max(self.maxima[i, M_TH], fabs(self.TH[i, z, k]))
                    self.maxima[i, M_TC] = _max(self.maxima[i, M_TC], fabs(self.TC[i, z, k]))
                    self.maxima[i, M_P] = _max(self.maxima[i, M_P], fabs(self.P[i, z, k]))

    @property
    def prediction(self):
        """Prediction of the pending forward step (target units)."""
        return self.y_hat if self.pending else None

    def h_pending(self):
        """Column states of the pending forward step (a copy)."""
        import numpy as np
        return np.asarray(self.h_new).copy()

    def forward(self, const double[::1] x):
        """Advance the states with x into scratch; return the prediction. Changes no state."""
        cdef Py_ssize_t i, j, z, k
        cdef Py_ssize_t n = self.n, m = self.m
        cdef double r, d, pre, hp, y_mean, y_sd, acc
        cdef double[4] a
        cdef bint ok = True
        if x.shape[0] != m:
            raise ValueError(f"expected {m} inputs, got {x.shape[0]}")
        self.pending = False
        with nogil:
            for j in range(m):
                if self.normalize:
                    r = _rate(self.x_count[j], self.decay)
                    d = x[j] - self.x_mean[j]
                    self.new_mean[j] = self.x_mean[j] + r * d
                    self.new_var[j] = (1.0 - r) * (self.x_var[j] + r * d * d)
                    self.xn[j] = (x[j] - self.new_mean[j]) / _std(self.new_var[j], self.var_floor)
                else:
                    self.xn[j] = x[j]
            for i in range(n):
                hp = self.h[i]
                for z in range(4):
                    pre = self.P[i, z, m] * hp + self.P[i, z, m + 1]
                    for j in range(m):
                        pre = pre + self.P[i, z, j] * self.xn[j]
                    a[z] = tanh(pre) if z == GATE_G else _sigmoid(pre)
                    self.gates[i, z] = a[z]
                self.c_new[i] = a[GATE_F] * self.c[i] + a[GATE_I] * a[GATE_G]
                self.h_new[i] = a[GATE_O] * tanh(self.c_new[i])
                if not (isfinite(self.c_new[i]) and fabs(self.c_new[i]) < LIMIT):
                    ok = False
            acc = self.scalars[S_BIAS]
            for i in range(n):
                acc = acc + self.w[i] * self.h_new[i]
            self.y_hat_n = acc
            if self.normalize:
                y_mean = self.scalars[S_Y_MEAN]
                y_sd = self._y_scale()
                self.y_hat = y_mean + y_sd * acc
            else:
                self.y_hat = acc
            if not isfinite(self.y_hat):
                ok = False
        if not ok:
            raise FloatingPointError(
                "the forward step produced a non-finite or overflowing value; the state was "
                "left unchanged (inputs too large? consider normalize=True)")
        self.pending = True
        return self.y_hat

    cdef inline double _y_scale(self) noexcept nogil:
        """Target standard deviation; 1 until two targets have been seen."""
        if self.scalars[S_Y_COUNT] < 2:
            return 1.0
        return _std(self.scalars[S_Y_VAR], self.var_floor)

    def commit(self, double y, bint learn):
        """Make the pending forward step the new state: update traces for every parameter
        and, if ``learn``, take one gradient step on 1/2 (y - y_hat)^2 (normalised units)."""
        cdef Py_ssize_t i, k, n = self.n, m = self.m
        cdef double delta = 0.0, y_sd = 1.0, r, d, alpha = self.step_size
        cdef double A, E, B, dmax, xmax = 1.0, tcb, thb, gb, pb, head_step = 0.0
        cdef double[4] Kc
        cdef double[4] Kh
        cdef bint ok = True
        if not self.pending:
            raise RuntimeError("commit() needs a forward() first")
        if learn:
            if self.normalize:
                y_sd = self._y_scale()
                delta = (y - self.scalars[S_Y_MEAN]) / y_sd - self.y_hat_n
            else:
                delta = y - self.y_hat_n
            if not (isfinite(delta) and fabs(delta) < LIMIT):
                raise FloatingPointError(
                    f"the prediction error {delta!r} is not finite or too large; the state was "
                    "left unchanged")
            # |step| <= alpha |g| for SGD; RMSProp's v >= (1 - beta) g^2 caps it at alpha/sqrt(1-beta)
            head_step = alpha * fabs(delta) if self.optimizer == OPT_SGD \
                else alpha / sqrt(1.0 - self.beta)
        with nogil:
            # ---- bound everything the in-place loop can write, before any write ----
            for k in range(m):
                xmax = _max(xmax, fabs(self.xn[k]))
            for i in range(n):
                self._coefficients(i, Kc, Kh, &A, &E, &B)
                dmax = _max(xmax, fabs(self.h[i]))
                tcb = self.gates[i, GATE_F] * self.maxima[i, M_TC] + fabs(A) * self.maxima[i, M_TH] \
                    + _max(_max(fabs(Kc[GATE_I]), fabs(Kc[GATE_F])), fabs(Kc[GATE_G])) * dmax
                thb = fabs(B) * tcb + fabs(E) * self.maxima[i, M_TH] + fabs(Kh[GATE_O]) * dmax
                gb = fabs(delta * self.w[i]) * thb
                if self.optimizer == OPT_SGD:
                    pb = self.maxima[i, M_P] + alpha * gb
                else:
                    pb = self.maxima[i, M_P] + head_step
                if not (tcb < LIMIT and thb < LIMIT and gb < LIMIT and pb < LIMIT
                        and fabs(self.w[i]) + head_step < LIMIT):
                    ok = False
            if ok:
                for i in range(n):
                    self._column_update(i, delta * self.w[i], learn, Kc, Kh)
                if learn:
                    self._head_update(delta)
                for i in range(n):
                    self.h[i] = self.h_new[i]
                    self.c[i] = self.c_new[i]
                if self.normalize:
                    for k in range(m):
                        self.x_mean[k] = self.new_mean[k]
                        self.x_var[k] = self.new_var[k]
                        self.x_count[k] += 1.0
                    if learn:
                        r = _rate(self.scalars[S_Y_COUNT], self.decay)
                        d = y - self.scalars[S_Y_MEAN]
                        self.scalars[S_Y_MEAN] += r * d
                        self.scalars[S_Y_VAR] = (1.0 - r) * (self.scalars[S_Y_VAR] + r * d * d)
                        self.scalars[S_Y_COUNT] += 1.0
        if not ok:
            raise FloatingPointError(
                "this step would push traces or parameters beyond 1e150 (diverging); the state "
                "was left unchanged: lower step_size or use normalize=True")
        self.pending = False

    cdef inline void _coefficients(self, Py_ssize_t i, double* Kc, double* Kh,
                                   double* A, double* E, double* B) noexcept nogil:
        """Per-column factors of the trace recursion (PAPER.md section 3):
        TC' = f TC + A TH + Kc[z] d,  TH' = B TC' + E TH + Kh[z] d, with d the direct input."""
        cdef Py_ssize_t m = self.m
        cdef double gi = self.gates[i, GATE_I], gf = self.gates[i, GATE_F]
        cdef double go = self.gates[i, GATE_O], gg = self.gates[i, GATE_G]
        cdef double Di = gi * (1.0 - gi), Df = gf * (1.0 - gf)
        cdef double Do = go * (1.0 - go), Dg = 1.0 - gg * gg
        cdef double cp = self.c[i], T = tanh(self.c_new[i])
        Kc[GATE_I] = gg * Di
        Kc[GATE_F] = cp * Df
        Kc[GATE_O] = 0.0
        Kc[GATE_G] = gi * Dg
        Kh[GATE_I] = 0.0
        Kh[GATE_F] = 0.0
        Kh[GATE_O] = T * Do
        Kh[GATE_G] = 0.0
        A[0] = Kc[GATE_I] * self.P[i, GATE_I, m] + Kc[GATE_F] * self.P[i, GATE_F, m] \
            + Kc[GATE_G] * self.P[i, GATE_G, m]
        E[0] = Kh[GATE_O] * self.P[i, GATE_O, m]
        B[0] = go * (1.0 - T * T)

    cdef inline void _column_update(self, Py_ssize_t i, double dw, bint learn,
                                    double* Kc, double* Kh) noexcept nogil:
        """Traces of column i's parameters, then (if learning) the step on
        dL/dp = -delta w_i TH_p; ``dw`` is delta * w_i."""
        cdef Py_ssize_t z, k, m = self.m, K = self.m + 2
        cdef double A, E, B, a, tc, d, g, v, hp = self.h[i], f = self.gates[i, GATE_F]
        cdef double alpha = self.step_size, beta = self.beta, eps = self.eps
        cdef double mth = 0.0, mtc = 0.0, mp = 0.0
        cdef double* p
        cdef double* th
        cdef double* tcp
        cdef double* vp
        self._coefficients(i, Kc, Kh, &A, &E, &B)
        for z in range(4):
            p = &self.P[i, z, 0]
            th = &self.TH[i, z, 0]
            tcp = &self.TC[i, z, 0]
            vp = &self.V[i, z, 0]
            for k in range(K):
                if k < m:
                    d = self.xn[k]
                elif k == m:
                    d = hp
                else:
                    d = 1.0
                a = th[k]
                tc = f * tcp[k] + A * a + Kc[z] * d
                a = B * tc + E * a + Kh[z] * d
                tcp[k] = tc
                th[k] = a
                if learn:
                    g = -dw * a
                    if self.optimizer == OPT_SGD:
                        p[k] -= alpha * g
                    else:
                        v = beta * vp[k] + (1.0 - beta) * g * g
                        vp[k] = v
                        p[k] -= alpha * g / (sqrt(v) + eps)
                mth = _max(mth, fabs(a))
                mtc = _max(mtc, fabs(tc))
                mp = _max(mp, fabs(p[k]))
        self.maxima[i, M_TH] = mth
        self.maxima[i, M_TC] = mtc
        self.maxima[i, M_P] = mp

    cdef inline void _head_update(self, double delta) noexcept nogil:
        """Step on the linear head: dL/dw_i = -delta h_i, dL/db = -delta."""
        cdef Py_ssize_t i
        cdef double g, v, alpha = self.step_size, beta = self.beta, eps = self.eps
        for i in range(self.n):
            g = -delta * self.h_new[i]
            if self.optimizer == OPT_SGD:
                self.w[i] -= alpha * g
            else:
                v = beta * self.vw[i] + (1.0 - beta) * g * g
                self.vw[i] = v
                self.w[i] -= alpha * g / (sqrt(v) + eps)
        g = -delta
        if self.optimizer == OPT_SGD:
            self.scalars[S_BIAS] -= alpha * g
        else:
            v = beta * self.scalars[S_BIAS_V] + (1.0 - beta) * g * g
            self.scalars[S_BIAS_V] = v
            self.scalars[S_BIAS] -= alpha * g / (sqrt(v) + eps)
