# cython: language_level=3
"""Columnar LSTM kernel: forward step, per-column RTRL traces and the learning step.

Layout (every array is owned by Python, the kernel only views it):

* ``P``, ``TH``, ``TC``, ``V``: ``(n, 4, K)`` with ``K = m + 2``; gates in the order input,
  forget, output, candidate; along the last axis the m input weights, the self-recurrent
  weight u, the bias. ``TH = dh_i/dp`` and ``TC = dc_i/dp`` for the parameters of column i
  (Javed, White & Sutton 2021); ``V`` is the RMSProp second moment. In memory they are
  column-innermost: rows of a ``(4, K, s)`` C-contiguous array, ``s >= n`` (the row stride,
  padded so that rows do not alias in the cache), of which the ``(n, 4, K)`` array is a
  sliced, transposed view (``streamlearn.network.empty_columns``): one parameter of every
  column is a contiguous row, so per-column work runs as vector loops across columns
  (``_loops.h``).
  Small float64 networks (``network.empty_columns``) keep them ``(n, 4, K)`` C-contiguous
  instead and run column by column, each column's 4 K parameters in one loop: with fewer
  columns than two vectors' worth of lanes, the per-row loops cost more than they save.
* ``h``, ``c``, ``w``, ``vw``, ``ew``: ``(n,)`` column states, head weights, their second
  moment and (TD) their eligibility.
* ``scalars``: see ``S_*`` below (head bias, moments, target statistics, TD bookkeeping).
* ``x_mean``, ``x_var``, ``x_count``, ``x_clipped``: ``(m,)`` input normalisation statistics
  and how many values of each input were clipped (:func:`_standardise`).
* Lateral connections (sparse, CSR by receiving column): ``lat_ptr`` ``(n + 1,)`` and
  ``lat_src`` ``(nnz,)``; column i reads h_j(t-1) for j in ``lat_src[lat_ptr[i]:lat_ptr[i+1]]``
  with weights ``LP`` ``(nnz, 4)`` (traces ``LTH``, ``LTC``, second moment ``LV``). The trace
  recursion keeps only the column's own path (Javed et al. 2021): exact without laterals.
* Stages (Javed et al. 2023): ``mode`` ``(n,)`` is 0 for a column not yet added, 1 for a
  frozen one, 2 for a learning one. Column i also reads the current states of columns
  ``0 .. st_ptr[i+1] - st_ptr[i] - 1`` (earlier stages, frozen), standardised by ``hs_mean``,
  ``hs_var`` when normalising, with weights ``SP`` ``(nst, 4)`` (traces ``STH``, ``STC``,
  ``SV``). With ``stage_lag`` it reads their states of the step before instead. Either way
  those inputs depend on no learning parameter, so the traces stay exact.
* ``AUX``, ``LAUX``, ``SAUX``: a second per-parameter trace, used by two learning rules:
  meta-gradients (dw_i/dp; the head learns by LMS, p by -delta (w_i TH + h_i AUX); PAPER.md
  section 5) and TD(lambda) (the eligibility trace e <- gamma lambda e + w_i TH; section 6).

A step is split in two so that nothing changes on failure (the C interface is
``streamlearn/_columnar.pxd``): ``forward`` computes the next states into scratch and checks
them for non-finite values; ``commit`` then updates traces and parameters in place. Before
touching anything, commit bounds every value it can write from per-column maxima kept by the
previous commit; if a bound exceeds ``LIMIT`` it fails instead, so the in-place loop never
has to be undone. :meth:`ColumnarKernel.run_rows` runs both for consecutive rows.
"""
from libc.math cimport NAN, exp, fabs, isfinite, sqrt
from libc.string cimport memcpy, memset

from _loops cimport (
    C_A, C_B, C_E, C_KC, C_KH, F_F, F_H, F_HPREV, F_W, FROZEN, GATE_F, GATE_G, GATE_I, GATE_O,
    INACTIVE, LEARNING, M_AUX, M_P, M_TC, M_TH, N_COEF, N_FAC, N_MAXIMA, SL_META, SL_RMS, SL_SGD,
    SL_TD, SL_TRACES, sl_block, sl_bounds, sl_cell, sl_coefficients, sl_coefficients_f32, sl_direct,
    sl_extra_preact, sl_flush_subnormals, sl_head, sl_narrow, sl_own, sl_own_columns, sl_own_f32,
    sl_own_rule, sl_own_rule_f32, sl_point, sl_point_f32, sl_preact, sl_preact_f32,
    sl_restore_fp, sl_row_max, sl_row_max_f32, sl_sigmoid_all, sl_state_stats, sl_tanh_all)


cdef enum:
    # the head's scalars (the ``scalars`` array); SCALARS below names them
    S_BIAS = 0
    S_BIAS_V = 1
    S_Y_MEAN = 2
    S_Y_VAR = 3
    S_Y_COUNT = 4
    S_V_PREV = 5       # TD: V(S_t) of the previous step
    S_HAS_PREV = 6     # TD: 1 when S_V_PREV is set (0 at the start of an episode)
    S_BIAS_E = 7       # TD: eligibility of the head bias
    S_Y_CLIPPED = 8    # targets clipped by _standardise
    N_SCALARS = 9

# The state dict's name of each scalar, in the kernel's order.
SCALARS = tuple(name for _, name in sorted({
    S_BIAS: "head_bias", S_BIAS_V: "head_bias_v", S_Y_MEAN: "y_mean", S_Y_VAR: "y_var",
    S_Y_COUNT: "y_count", S_V_PREV: "previous_value", S_HAS_PREV: "has_previous",
    S_BIAS_E: "head_bias_eligibility", S_Y_CLIPPED: "y_clipped"}.items()))
assert len(SCALARS) == N_SCALARS

OPTIMIZERS = ("sgd", "rmsprop")
cdef enum:
    OPT_SGD = 0
    OPT_RMSPROP = 1

RULES = ("regression", "meta", "td", "classification")
cdef enum:
    RULE_REGRESSION = 0
    RULE_META = 1
    RULE_TD = 2
    RULE_CLASSIFY = 3

# Largest magnitude any stored value may reach; squares of it stay finite.
cdef double LIMIT = 1e150
# The same for float32 parameters: squares of it (gradients in RMSProp) stay finite in float.
cdef double LIMIT_F32 = 1e18
# for the checks of a loaded state (streamlearn.network)
VALUE_LIMIT = LIMIT
VALUE_LIMIT_F32 = LIMIT_F32
# Values of an input (or the target) seen before it is clipped (_standardise): statistics of
# fewer values say too little about what an outlier is.
cdef double CLIP_AFTER = 10.0
# Commits between exact rescans of the per-column maxima (in between, each commit's bounds
# stand in for them: they are upper bounds, so the overflow check stays safe).
cdef Py_ssize_t REFRESH_EVERY = 64
# Parameters from which a single forward or commit releases the GIL (run_rows always does).
cdef Py_ssize_t RELEASE_GIL_PARAMETERS = 10_000


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


cdef inline double _standardise(double x, double mean, double var, double count, double decay,
                                double floor, double* new_mean, double* new_var,
                                double* taken) noexcept nogil:
    """Running statistics updated with x (into new_mean, new_var) and x standardised by them;
    ``taken`` is the value that entered them: x, or x clipped.

    Robust to outliers: once CLIP_AFTER values have been seen, x is clipped to
    mean +- sd / sqrt(r), r the update rate (_rate), before it enters the statistics; so one
    value moves the mean by at most sqrt(r) sd and at most doubles the variance, where an
    unclipped outlier would inflate the variance for the 1/r steps it is remembered and
    silence the input meanwhile. A sustained shift still gets through: the variance may
    double per value. The standardised value is kept within +-1/sqrt(r), the bound that
    clipping gives, in the first values too."""
    cdef double r = _rate(count, decay)
    cdef double d = x - mean
    cdef double bound = _std(var, floor) / sqrt(r)
    cdef double z
    if count >= CLIP_AFTER and fabs(d) > bound:
        d = bound if d > 0.0 else -bound
        x = mean + d
    taken[0] = x
    new_mean[0] = mean + r * d
    new_var[0] = (1.0 - r) * (var + r * d * d)
    z = (x - new_mean[0]) / _std(new_var[0], floor)
    return _clamp(z, 1.0 / sqrt(r))


cdef inline double _clamp(double z, double bound) noexcept nogil:
    return z if fabs(z) <= bound else (bound if z > 0.0 else -bound)


def _own_rows(array, str name, dtype, bint per_column, Py_ssize_t stride):
    """The memory of an (n, 4, K) per-parameter array as the kernel indexes it: the array
    itself if ``per_column`` (C-contiguous), else its (4, K, n) transpose, whose rows must
    be contiguous and ``stride`` elements apart (gate after gate)."""
    import numpy as np
    rows = np.asarray(array)
    rows = rows if per_column else rows.transpose(1, 2, 0)
    if per_column:
        fine = rows.flags.c_contiguous
    else:
        size = rows.itemsize
        fine = rows.strides[:2] == (rows.shape[1] * stride * size, stride * size) and (
            rows.strides[2] == size or rows.shape[2] == 1)
    if not fine or rows.dtype != dtype:
        raise ValueError(f"{name} must be a C-contiguous or column-innermost "
                         f"{np.dtype(dtype).name} array laid out like P "
                         "(streamlearn.network.empty_columns)")
    return rows


cdef inline double _dot(const double* a, const double* b, Py_ssize_t count) noexcept nogil:
    """a . b with two independent accumulators (no reassociation by the compiler needed)."""
    cdef Py_ssize_t j
    cdef double s0 = 0.0, s1 = 0.0
    for j in range(0, count - 1, 2):
        s0 = s0 + a[j] * b[j]
        s1 = s1 + a[j + 1] * b[j + 1]
    if count % 2:
        s0 = s0 + a[count - 1] * b[count - 1]
    return s0 + s1


cdef inline void _bias_step(double* b, double* v, double g, double alpha, double beta,
                            double eps, bint sgd) noexcept nogil:
    """A bias's step on its gradient g: SGD, or RMSProp with second moment v."""
    if sgd:
        b[0] -= alpha * g
    else:
        v[0] = beta * v[0] + (1.0 - beta) * g * g
        b[0] -= alpha * g / (sqrt(v[0]) + eps)


cdef inline void _track(Maxima* s, double th, double tc, double p, double aux) noexcept nogil:
    s.mth = _max(s.mth, fabs(th))
    s.mtc = _max(s.mtc, fabs(tc))
    s.mp = _max(s.mp, fabs(p))
    s.maux = _max(s.maux, fabs(aux))


# Column modes by name, as _loops.h numbers them (network.py reads them here).
COLUMN_MODES = (INACTIVE, FROZEN, LEARNING)


def activations(const double[::1] x):
    """(logistic(x), tanh(x)) elementwise, as the forward step computes them (for tests)."""
    import numpy as np
    cdef Py_ssize_t n = x.shape[0]
    logistic, tanh = np.empty(n), np.empty(n)
    cdef double[::1] lo = logistic, th = tanh
    if n:
        sl_sigmoid_all(n, &x[0], &lo[0])
        sl_tanh_all(n, &x[0], &th[0])
    return logistic, tanh


cpdef raise_for_status(int status, double delta):
    """Raise the FloatingPointError that a kernel status code stands for (0: nothing)."""
    if status == STATUS_ERROR:
        raise FloatingPointError(
            f"the error {delta!r} is not finite or too large; the state was left unchanged")
    if status == STATUS_DIVERGING:
        raise FloatingPointError(
            "this step would push traces or parameters beyond 1e150 (1e18 for float32: "
            "diverging); the state "
            "was left unchanged: lower step_size or use normalize=True")
    if status == STATUS_FORWARD:
        raise FloatingPointError(
            "the forward step produced a non-finite or overflowing value; the state was "
            "left unchanged (inputs too large? consider normalize=True)")


cdef class ColumnarKernel:
    """State views plus the forward and commit steps of a columnar LSTM network (fields:
    streamlearn/_columnar.pxd)."""

    def __init__(self, *, P, TH, TC, V, AUX=None,
                 const Py_ssize_t[::1] lat_ptr, const Py_ssize_t[::1] lat_src,
                 double[:, ::1] LP, double[:, ::1] LTH, double[:, ::1] LTC, double[:, ::1] LV,
                 double[:, ::1] LAUX=None,
                 const Py_ssize_t[::1] st_ptr, const Py_ssize_t[::1] mode,
                 double[:, ::1] SP, double[:, ::1] STH, double[:, ::1] STC, double[:, ::1] SV,
                 double[:, ::1] SAUX=None, double[::1] hs_mean, double[::1] hs_var,
                 double[::1] h, double[::1] c, double[::1] w, double[::1] vw, double[::1] ew,
                 double[::1] scalars, double[::1] x_mean, double[::1] x_var,
                 double[::1] x_count, double[::1] x_clipped,
                 double[:, ::1] W=None, double[:, ::1] WV=None, double[::1] b=None,
                 double[::1] bv=None,
                 str optimizer, double step_size, bint normalize, str rule="regression",
                 double head_step_size=0.0, double gamma=0.0, double lambda_=0.0,
                 double beta=0.9999, double eps=1e-8, double decay=0.9999,
                 double var_floor=1e-8, bint stage_lag=False):
        """Views of a network's arrays (``streamlearn.network.ColumnarNetwork.arrays``, passed
        by name: the names are this signature's), shaped and laid out as the module docstring
        says, and the learning rule's settings. The AUX arrays are the meta and TD rules',
        W, WV, b, bv the classification rule's."""
        import numpy as np
        self.rule = RULES.index(rule)
        self.aux = self.rule in (RULE_META, RULE_TD)
        given = np.asarray(P)
        dtype = given.dtype
        if dtype not in (np.float64, np.float32):
            raise ValueError(f"P must be float64 or float32, got {dtype}")
        self.f32 = dtype == np.float32
        self.limit = LIMIT_F32 if self.f32 else LIMIT
        self.per_column = not self.f32 and given.flags.c_contiguous and (
            given.shape[0] == 1 or not given.transpose(1, 2, 0).flags.c_contiguous)
        self.rs = given.strides[2] // given.itemsize
        P, TH, TC, V = [_own_rows(array, key, dtype, self.per_column, self.rs)
                        for key, array in (("P", P), ("TH", TH), ("TC", TC), ("V", V))]
        if self.aux:
            if AUX is None or LAUX is None or SAUX is None:
                raise ValueError(f"the {rule} rule needs AUX, LAUX and SAUX")
            AUX = _own_rows(AUX, "AUX", dtype, self.per_column, self.rs)
            self.LAUX, self.SAUX = LAUX, SAUX
        if self.f32:
            self.P32, self.TH32, self.TC32, self.V32 = P, TH, TC, V
            if self.aux:
                self.AUX32 = AUX
        else:
            self.P, self.TH, self.TC, self.V = P, TH, TC, V
            if self.aux:
                self.AUX = AUX
        self.lat_ptr, self.lat_src, self.LP, self.LTH, self.LTC, self.LV = \
            lat_ptr, lat_src, LP, LTH, LTC, LV
        self.st_ptr, self.mode, self.SP, self.STH, self.STC, self.SV = \
            st_ptr, mode, SP, STH, STC, SV
        self.hs_mean, self.hs_var = hs_mean, hs_var
        self.h, self.c, self.w, self.vw, self.ew, self.scalars = h, c, w, vw, ew, scalars
        self.x_mean, self.x_var, self.x_count, self.x_clipped = x_mean, x_var, x_count, x_clipped
        self.classify = self.rule == RULE_CLASSIFY
        if self.classify:
            if W is None or WV is None or b is None or bv is None:
                raise ValueError("the classification rule needs W, WV, b and bv")
            self.W, self.WV, self.b, self.bv = W, WV, b, bv
        self.n = P.shape[0] if self.per_column else P.shape[2]
        self.stages = self.SP.shape[0] > 0
        self.K = P.shape[2] if self.per_column else P.shape[1]
        self.m = self.K - 2
        if self.scalars.shape[0] != N_SCALARS:
            raise ValueError(f"scalars must have {N_SCALARS} entries")
        if self.lat_ptr.shape[0] != self.n + 1 or self.lat_ptr[self.n] != self.LP.shape[0]:
            raise ValueError("lateral connections do not match the number of columns")
        if self.st_ptr.shape[0] != self.n + 1 or self.st_ptr[self.n] != self.SP.shape[0]:
            raise ValueError("stage connections do not match the number of columns")
        # a stage reads the new states of the earlier stages: the forward step runs the
        # columns stage by stage, each run of columns with as many stage weights at once;
        # with stage_lag, the states before the step, known beforehand: one run
        inputs = np.diff(np.asarray(st_ptr))
        self.stage_lag = stage_lag
        self.run_end = np.array([self.n], np.intp) if stage_lag else np.append(
            np.flatnonzero(np.diff(inputs)) + 1, self.n).astype(np.intp)
        self.optimizer = OPTIMIZERS.index(optimizer)
        self.step_size = step_size
        self.head_step_size = head_step_size
        self.gamma = gamma
        self.lambda_ = lambda_
        self.normalize = normalize
        self.normalize_target = normalize and self.rule in (RULE_REGRESSION, RULE_META)
        self.beta = beta
        self.eps = eps
        self.decay = decay
        self.var_floor = var_floor
        self.xn = np.zeros(self.m)
        self.new_mean = np.zeros(self.m)
        self.new_var = np.zeros(self.m)
        self.clipped = np.zeros(self.m)  # 1.0 where _standardise clipped the input
        self.hn = np.zeros(self.n)
        # The cell runs whole vectors of 8 columns, the last one on padding lanes (INACTIVE,
        # c = 0), instead of ending in a scalar loop.
        self.gw = (self.n + 7) // 8 * 8
        self.gates = np.zeros((4, self.gw))
        self.h_new = np.zeros(self.gw)
        self.c_new = np.zeros(self.gw)
        self.tanh_c = np.zeros(self.gw)
        self.c_pad = np.zeros(self.gw)
        self.mode_pad = np.zeros(self.gw, np.intp)
        self.c_pad[:self.n] = self.c
        self.mode_pad[:self.n] = self.mode
        self.maxima = np.zeros((N_MAXIMA, self.n))
        self.bounds = np.zeros((N_MAXIMA, self.n))
        self.coef = np.zeros((N_COEF, self.n))  # rows Kc[o], Kh[i], Kh[f], Kh[g] stay 0
        # Column-innermost rows padded to a cache line (network.row_stride): the learning
        # step also runs the padding lanes, so that the last lanes of a row are one more
        # vector, not a scalar loop. The padding is zero with zero factors (fac32, fac64),
        # and zeros stay zero.
        lanes = 64 // given.itemsize
        self.width = self.n
        if not self.per_column and self.rs >= -(-self.n // lanes) * lanes:
            self.width = -(-self.n // lanes) * lanes
        if self.f32:
            self.fac32 = np.zeros((N_FAC, self.width), np.float32)
        elif self.width > self.n:
            self.fac64 = np.zeros((N_FAC, self.width))
        self.x_in = np.zeros(self.m)
        block = max(self.K if self.per_column else 1,
                    int(np.diff(np.asarray(lat_ptr)).max(initial=0)), int(inputs.max(initial=0)))
        if self.per_column:
            self.urows = np.zeros((4, self.n))
        self.kcd = np.zeros(4 * block)
        self.n_logits = self.W.shape[0] if self.classify else 0
        if self.classify and (self.n_logits < 1 or self.W.shape[1] != self.n
                              or self.WV.shape[0] != self.n_logits or self.WV.shape[1] != self.n
                              or self.b.shape[0] != self.n_logits
                              or self.bv.shape[0] != self.n_logits):
            raise ValueError("W, WV must be (logits, n) and b, bv (logits,), logits >= 1")
        self.probs = np.zeros(self.n_logits)
        self.onehot = np.zeros(self.n_logits)
        self.weff = np.zeros(self.n if self.classify else 0)
        self.dl = np.zeros(block)
        # releasing and retaking the GIL costs about as much as a step of a few hundred
        # parameters; other threads (metrics, I/O) wait at most one step of this size
        self.release_gil = 4 * self.K * self.n + 4 * (self.LP.shape[0] + self.SP.shape[0]) \
            >= RELEASE_GIL_PARAMETERS
        self.khd = np.zeros(4 * block)
        self.commits = 0
        self._refresh_maxima()
        self.pending = False

    def reload(self):
        """Take up new values written into the arrays in place (a learner table loads
        another learner's row into the arrays this kernel views): drop any pending forward
        step, copy c into the cell's padded input and recompute the maxima exactly."""
        self.pending = False
        self.learned = False
        self.delta = 0.0
        memcpy(&self.c_pad[0], &self.c[0], self.n * sizeof(double))
        self._refresh_maxima()

    def __reduce__(self):
        raise TypeError("a ColumnarKernel views its network's arrays and cannot be copied or "
                        "pickled: copy the learner (clone, to_bytes)")

    def detach(self):
        """Mark the kernel as dropped by its network (LearnerCore then fetches the new one)."""
        self.detached = True

    cdef void _refresh_maxima(self) noexcept nogil:
        """Per-column max |TH|, |TC|, |P|, |AUX| (commit keeps them current after that)."""
        cdef Py_ssize_t i, z, k, n = self.n
        cdef Maxima s
        cdef double* mx
        for k in range(N_MAXIMA):
            mx = &self.maxima[k, 0]
            for i in range(n):
                mx[i] = 0.0
        for z in range(0 if self.per_column else 4):  # own parameters: by rows, across columns
            for k in range(self.K):
                if self.f32:
                    sl_row_max_f32(n, &self.maxima[M_TH, 0], &self.TH32[z, k, 0])
                    sl_row_max_f32(n, &self.maxima[M_TC, 0], &self.TC32[z, k, 0])
                    sl_row_max_f32(n, &self.maxima[M_P, 0], &self.P32[z, k, 0])
                    if self.aux:
                        sl_row_max_f32(n, &self.maxima[M_AUX, 0], &self.AUX32[z, k, 0])
                else:
                    sl_row_max(n, &self.maxima[M_TH, 0], &self.TH[z, k, 0])
                    sl_row_max(n, &self.maxima[M_TC, 0], &self.TC[z, k, 0])
                    sl_row_max(n, &self.maxima[M_P, 0], &self.P[z, k, 0])
                    if self.aux:
                        sl_row_max(n, &self.maxima[M_AUX, 0], &self.AUX[z, k, 0])
        for i in range(n):  # then each column's lateral and stage weights (and own, per_column)
            s.mth = self.maxima[M_TH, i]
            s.mtc = self.maxima[M_TC, i]
            s.mp = self.maxima[M_P, i]
            s.maux = self.maxima[M_AUX, i]
            for z in range(4):
                for k in range(self.K if self.per_column else 0):
                    _track(&s, self.TH[i, z, k], self.TC[i, z, k], self.P[i, z, k],
                           self.AUX[i, z, k] if self.aux else 0.0)
                for k in range(self.lat_ptr[i], self.lat_ptr[i + 1]):
                    _track(&s, self.LTH[k, z], self.LTC[k, z], self.LP[k, z],
                           self.LAUX[k, z] if self.aux else 0.0)
                for k in range(self.st_ptr[i], self.st_ptr[i + 1]):
                    _track(&s, self.STH[k, z], self.STC[k, z], self.SP[k, z],
                           self.SAUX[k, z] if self.aux else 0.0)
            self._store_maxima(i, &s)

    cdef void _store_maxima(self, Py_ssize_t i, Maxima* s) noexcept nogil:
        self.maxima[M_TH, i] = s.mth
        self.maxima[M_TC, i] = s.mtc
        self.maxima[M_P, i] = s.mp
        self.maxima[M_AUX, i] = s.maux

    cdef double forward_checked(self, const double* x) except? -1.0:
        """The prediction for inputs x (m values): the forward step on them, which becomes
        the pending step, run without the GIL when long; when the pending step has the same
        inputs (predict_one, then learn_one with the same x), its prediction without running
        it again. Raises FloatingPointError, having changed nothing, when the step fails."""
        cdef Py_ssize_t j, m = self.m
        cdef int status
        cdef unsigned mode
        if self.pending:
            for j in range(m):
                if x[j] != self.x_in[j]:
                    break
            else:
                return self.y_hat
        for j in range(m):
            self.x_in[j] = x[j]
        self.pending = False
        mode = sl_flush_subnormals()
        if self.release_gil:
            with nogil:
                status = self.forward(&self.x_in[0] if m else NULL)
        else:
            status = self.forward(&self.x_in[0] if m else NULL)
        sl_restore_fp(mode)
        if status:
            raise_for_status(status, 0.0)
        self.pending = True
        return self.y_hat

    cdef int forward(self, const double* x) noexcept nogil:
        """The forward step on inputs x (m values) into scratch: STATUS_OK, or
        STATUS_FORWARD if a value is non-finite or overflows (the caller then drops it).
        Stage by stage: the pre-activations of a stage's columns (sl_preact, then their
        lateral and stage weights: sl_extra_preact), then the cell (sl_cell: activations,
        c', tanh c', h'), each a vector loop."""
        cdef Py_ssize_t i, j, z, lo, hi, run
        cdef Py_ssize_t n = self.n, m = self.m, nl = self.LP.shape[0], ns = self.SP.shape[0]
        cdef double taken, y_mean, y_sd, acc
        cdef bint ok = True
        cdef bint extra = self.stages or nl > 0
        cdef const double* row
        cdef const double* xn = &self.xn[0] if m else NULL
        for j in range(m):
            if self.normalize:
                self.xn[j] = _standardise(x[j], self.x_mean[j], self.x_var[j], self.x_count[j],
                                          self.decay, self.var_floor, &self.new_mean[j],
                                          &self.new_var[j], &taken)
                self.clipped[j] = taken != x[j]
            else:
                self.xn[j] = x[j]
        if self.stages and self.stage_lag:
            self._stage_inputs(&self.h[0], 0, n)
        lo = 0
        for run in range(self.run_end.shape[0]):  # stage by stage
            hi = self.run_end[run]
            if self.f32:  # pre-activations from the own parameters
                sl_preact_f32(lo, hi, self.K, self.rs, &self.P32[0, 0, 0], xn, &self.h[0],
                              &self.gates[0, 0], self.gw)
            elif self.per_column:
                for i in range(lo, hi):
                    for z in range(4):
                        row = &self.P[i, z, 0]
                        self.gates[z, i] = _dot(row, xn, m) + row[m] * self.h[i] + row[m + 1]
            else:
                sl_preact(lo, hi, self.K, self.rs, &self.P[0, 0, 0], xn, &self.h[0],
                          &self.gates[0, 0], self.gw)
            if extra:  # lateral and stage weights
                sl_extra_preact(lo, hi, &self.lat_ptr[0], &self.lat_src[0] if nl else NULL,
                                &self.LP[0, 0] if nl else NULL, &self.h[0], &self.st_ptr[0],
                                &self.SP[0, 0] if ns else NULL, &self.hn[0], &self.gates[0, 0],
                                self.gw)
            if not sl_cell(lo, hi if hi < n else self.gw, &self.gates[0, 0], self.gw,
                           &self.mode_pad[0], &self.c_pad[0], &self.c_new[0], &self.tanh_c[0],
                           &self.h_new[0], self.limit):
                ok = False
            if self.stages and not self.stage_lag:
                self._stage_inputs(&self.h_new[0], lo, hi)
            lo = hi
        acc = self.scalars[S_BIAS]
        for i in range(n):
            acc = acc + self.w[i] * self.h_new[i]
        self.y_hat_n = acc
        if self.normalize_target:
            y_mean = self.scalars[S_Y_MEAN]
            y_sd = self._y_scale()
            self.y_hat = y_mean + y_sd * acc
        else:
            self.y_hat = acc
        if not isfinite(self.y_hat):
            ok = False
        if self.classify and not self._class_probabilities():
            ok = False
        return STATUS_OK if ok else STATUS_FORWARD

    cdef bint _class_probabilities(self) noexcept nogil:
        """The classification head on the new states: logits z_l = W_l . h' + b_l, then
        p = logistic(z_0) for one logit (two classes: p is the second's probability), else
        p = softmax(z). False if a logit is not finite."""
        cdef Py_ssize_t l, L = self.n_logits
        cdef double z, top = 0.0, total = 0.0
        cdef double* p = &self.probs[0]
        for l in range(L):
            z = self.b[l] + _dot(&self.W[l, 0], &self.h_new[0], self.n)
            if not isfinite(z):
                return False
            p[l] = z
            top = z if l == 0 or z > top else top
        if L == 1:
            p[0] = 1.0 / (1.0 + exp(-p[0]))
            return True
        for l in range(L):  # shifted by the largest logit: no overflow
            p[l] = exp(p[l] - top)
            total += p[l]
        for l in range(L):
            p[l] = p[l] / total
        return True

    cdef void _stage_inputs(self, const double* h, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
        """``hn`` of columns lo..hi-1, what later stages read: their states h, standardised
        when normalising, 0 for a column not yet added."""
        cdef Py_ssize_t i
        for i in range(lo, hi):
            if self.mode[i] == INACTIVE:
                self.hn[i] = 0.0
            elif self.normalize:
                self.hn[i] = (h[i] - self.hs_mean[i]) / _std(self.hs_var[i], self.var_floor)
            else:
                self.hn[i] = h[i]

    cdef double _y_scale(self) noexcept nogil:
        """Target standard deviation; 0 until two targets have been seen (the prediction is
        then their mean: one target has no scale)."""
        if self.scalars[S_Y_COUNT] < 2:
            return 0.0
        return _std(self.scalars[S_Y_VAR], self.var_floor)

    cdef double commit_checked(self, double y, bint learn, double weight) except? -1.0:
        """Make the pending forward step the new state: update traces for every learning
        parameter and, if ``learn``, take one learning step with ``y``: the target of the
        prediction (regression and meta rules, on 1/2 (y - y_hat)^2 in normalised units) or
        the cumulant observed with this step's input (TD rule:
        delta = y + gamma V(S_t+1) - V(S_t), nothing to learn at an episode's first step),
        its gradient scaled by the sample weight ``weight`` (>= 0). Returns the error delta (0 when nothing was learned), also kept in ``delta``;
        raises FloatingPointError, having changed nothing, when the step fails (:meth:`commit`)."""
        cdef double delta = 0.0
        cdef int status
        cdef unsigned mode
        if not self.pending:
            raise RuntimeError("commit needs a forward step first")
        mode = sl_flush_subnormals()
        if self.release_gil:
            with nogil:
                status = self.commit(y, learn, weight, &delta)
        else:
            status = self.commit(y, learn, weight, &delta)
        sl_restore_fp(mode)
        if status:
            raise_for_status(status, delta)
        self.pending = False
        self.delta = delta
        return delta

    def run_rows(self, const double[:, ::1] X, const double[::1] y, bint learn,
                 double[::1] out):
        """Steps for consecutive rows of X (forward, then commit with y[r]) in one call,
        writing each row's prediction to out. Returns (rows applied, status, delta): on an
        error (status != 0, see :func:`raise_for_status`) the rows before it stay applied."""
        cdef Py_ssize_t r, applied = 0, rows = X.shape[0]
        cdef double delta = 0.0
        cdef int status = 0
        cdef unsigned mode
        if X.shape[1] != self.m or y.shape[0] != rows or out.shape[0] != rows:
            raise ValueError("X must be (rows, m) with y and out of length rows")
        self.pending = False
        with nogil:
            mode = sl_flush_subnormals()
            for r in range(rows):
                status = self.forward(&X[r, 0] if self.m else NULL)
                if status:
                    break
                out[r] = self.y_hat
                status = self.commit(y[r], learn, 1.0, &delta)
                if status:
                    break
                applied += 1
            sl_restore_fp(mode)
        if applied and not status:
            self.delta = delta
        return applied, status, delta

    def predict_rows(self, const double[:, ::1] X, double[::1] out, double[:, ::1] probs=None):
        """The prediction for each row of X from the current state (nothing changes); with
        ``probs`` (rows, logits), the classification head's probabilities too."""
        cdef Py_ssize_t r, l, rows = X.shape[0]
        cdef bint ok = True, with_probs = probs is not None
        cdef unsigned mode
        if X.shape[1] != self.m or out.shape[0] != rows:
            raise ValueError("X must be (rows, m) and out of length rows")
        if with_probs and (not self.classify or probs.shape[0] != rows
                           or probs.shape[1] != self.n_logits):
            raise ValueError("probs must be (rows, logits), for the classification rule")
        self.pending = False
        with nogil:
            mode = sl_flush_subnormals()
            for r in range(rows):
                ok = self.forward(&X[r, 0] if self.m else NULL) == STATUS_OK
                if not ok:
                    break
                out[r] = self.y_hat
                for l in range(self.n_logits if with_probs else 0):
                    probs[r, l] = self.probs[l]
            sl_restore_fp(mode)
        if not ok:
            raise_for_status(STATUS_FORWARD, 0.0)

    def probabilities(self):
        """The classification head's probabilities of the pending forward step (a copy)."""
        import numpy as np
        if not self.pending or not self.classify:
            raise RuntimeError("probabilities() needs a pending forward step of a classifier")
        return np.array(self.probs)

    cdef int commit(self, double y, bint learn, double weight, double* delta_out) noexcept nogil:
        """The commit step, in phases: the error, the learning rule, the bounds on what the
        update can write, the parameters with their traces, the head, the new state, the
        running statistics. The step takes the error delta times the sample weight (its
        gradient scales with it); ``delta_out`` gets delta itself.
        Returns STATUS_OK, STATUS_ERROR (delta not finite or too large) or STATUS_DIVERGING
        (a bound exceeds LIMIT even with exact maxima), having changed nothing in the last
        two cases."""
        cdef double delta, step, head_step, y_mean = 0.0, y_var = 0.0, y_taken = y
        cdef bint td = self.rule == RULE_TD
        cdef sl_own_rule rule
        if td:  # no TD error at an episode's first step
            learn = learn and self.scalars[S_HAS_PREV] != 0.0
        delta = self._error(y, learn, &y_mean, &y_var, &y_taken)
        delta_out[0] = delta
        step = delta * weight
        if not (isfinite(delta) and fabs(delta) < self.limit and fabs(step) < self.limit):
            return STATUS_ERROR
        self._rule(step, learn, &rule)
        head_step = self._head_step_bound(step, learn, td)
        if not self._bounds_ok(&rule, head_step):
            self._refresh_maxima()  # the propagated bounds may be loose: use exact maxima
            if not self._bounds_ok(&rule, head_step):
                return STATUS_DIVERGING
        self._update_parameters(&rule)
        if learn:
            self._head_update(step)
        if td:
            self._head_eligibility()
            self.scalars[S_V_PREV] = self.y_hat
            self.scalars[S_HAS_PREV] = 1.0
        self._advance_state()
        self._update_statistics(y, learn, y_mean, y_var, y_taken)
        self.learned = learn  # False for TD at an episode's first step
        return STATUS_OK

    cdef double _error(self, double y, bint learn, double* y_mean, double* y_var,
                              double* y_taken) noexcept nogil:
        """The error delta the step learns from (0 when it does not learn): the TD error,
        or the target minus the prediction in the head's units (the target statistics,
        updated, into y_mean and y_var). Classification: y is the class's index; the error
        is 1, and the columns' head weights are ``weff`` (:meth:`_class_error`)."""
        if not learn:
            return 0.0
        if self.classify:
            return self._class_error(y)
        if self.rule == RULE_TD:
            return y + self.gamma * self.y_hat - self.scalars[S_V_PREV]
        if self.normalize_target:
            return self._target(y, y_mean, y_var, y_taken) - self.y_hat_n
        return y - self.y_hat_n

    cdef double _class_error(self, double y) noexcept nogil:
        """For class index y: the one-hot target t (for one logit, t_0 = [y == 1]) into
        ``onehot`` and weff_i = sum_l (t_l - p_l) W_li = -dL/dh_i for the log loss L (the
        gradient through softmax or logistic is p - t), so that the columns' update
        -delta weff_i TH with delta = 1 is their exact gradient. Returns 1, or NaN for an
        index out of range (the commit then refuses the step)."""
        cdef Py_ssize_t i, l, L = self.n_logits
        cdef double e
        if not (0.0 <= y < (2 if L == 1 else L)) or y != <double><Py_ssize_t>y:
            return NAN
        for l in range(L):
            self.onehot[l] = 1.0 if (y == 1.0 if L == 1 else y == l) else 0.0
        for i in range(self.n):
            self.weff[i] = 0.0
        for l in range(L):
            e = self.onehot[l] - self.probs[l]
            for i in range(self.n):
                self.weff[i] += e * self.W[l, i]
        return 1.0

    cdef double _head_step_bound(self, double delta, bint learn, bint td) noexcept nogil:
        """A bound on the size of the head's step: |step| <= alpha |g| for SGD; RMSProp's
        v >= (1 - beta) g^2 caps it at alpha / sqrt(1 - beta)."""
        cdef double alpha = self.step_size, gl = self.gamma * self.lambda_
        if not learn:
            return 0.0
        if self.rule == RULE_META:
            return self.head_step_size * fabs(delta)
        if self.optimizer == OPT_SGD:
            return alpha * fabs(delta) * (1.0 / (1.0 - gl) if td else 1.0)
        return alpha / sqrt(1.0 - self.beta)

    cdef void _update_parameters(self, const sl_own_rule* rule) noexcept nogil:
        """The columns' own parameters, then the lateral and stage weights of the learning
        columns, with their traces; the bounds computed for the step become the maxima."""
        cdef Py_ssize_t i, n = self.n, m = self.m
        if self.per_column:
            sl_own_columns(n, self.K, &self.mode[0], &self.P[0, 0, 0], &self.TH[0, 0, 0],
                           &self.TC[0, 0, 0], &self.V[0, 0, 0],
                           &self.AUX[0, 0, 0] if self.aux else NULL,
                           &self.xn[0] if m else NULL, &self.kcd[0], &self.khd[0], rule)
        else:
            self._own_update(rule)
        for i in range(n if self.LP.shape[0] or self.stages else 0):
            if self.mode[i] == LEARNING:
                self._column_update(i, rule)
        # the bounds are the new maxima (sl_bounds kept those of the other columns)
        self.maxima, self.bounds = self.bounds, self.maxima
        self.commits += 1
        if self.commits % REFRESH_EVERY == 0:  # tighten the propagated bounds
            self._refresh_maxima()

    cdef void _advance_state(self) noexcept nogil:
        """The forward step's states become the columns' states."""
        cdef Py_ssize_t n = self.n
        memcpy(&self.h[0], &self.h_new[0], n * sizeof(double))
        memcpy(&self.c[0], &self.c_new[0], n * sizeof(double))
        memcpy(&self.c_pad[0], &self.c_new[0], n * sizeof(double))

    cdef void _update_statistics(self, double y, bint learn, double y_mean, double y_var,
                                        double y_taken) noexcept nogil:
        """The running statistics the forward step computed (inputs, and the learning
        columns' states) and the target's, when it learned from one."""
        cdef Py_ssize_t k, n = self.n, m = self.m
        if self.normalize:
            for k in range(m):
                self.x_mean[k] = self.new_mean[k]
                self.x_var[k] = self.new_var[k]
                self.x_count[k] += 1.0
                self.x_clipped[k] += self.clipped[k]
            sl_state_stats(n, &self.mode[0], &self.h_new[0], 1.0 - self.decay,
                           &self.hs_mean[0], &self.hs_var[0])  # frozen columns keep theirs
        if self.normalize_target and learn:
            self.scalars[S_Y_MEAN] = y_mean
            self.scalars[S_Y_VAR] = y_var
            self.scalars[S_Y_COUNT] += 1.0
            self.scalars[S_Y_CLIPPED] += y_taken != y

    cdef double _target(self, double y, double* mean, double* var,
                               double* taken) noexcept nogil:
        """The target in the head's units, and the target statistics updated with it (into
        mean, var; ``taken`` as in _standardise). From the third target on that is y
        (clipped) standardised by the statistics the prediction used; before, by the
        statistics that include it, so that the first errors are in standard units whatever
        the target's scale (in raw units they swamped RMSProp's moments for thousands of
        steps)."""
        cdef double count = self.scalars[S_Y_COUNT]
        cdef double z = _standardise(y, self.scalars[S_Y_MEAN], self.scalars[S_Y_VAR], count,
                                     self.decay, self.var_floor, mean, var, taken)
        if count < 2:
            return z
        z = (taken[0] - self.scalars[S_Y_MEAN]) / self._y_scale()
        return _clamp(z, 1.0 / sqrt(_rate(count, self.decay)))

    cdef bint _bounds_ok(self, const sl_own_rule* r, double head_step) noexcept nogil:
        """Bound, per learning column, everything the in-place update can write (into
        ``bounds``; sl_bounds), having computed the columns' trace-recursion factors (into
        ``coef``, for the update; sl_coefficients); False if any bound reaches LIMIT."""
        cdef Py_ssize_t i, k, z, n = self.n, m = self.m
        cdef double xmax = 1.0
        for k in range(m):
            xmax = _max(xmax, fabs(self.xn[k]))
        for k in range(n if self.stages else 0):  # |hn|: the inputs of stage weights
            xmax = _max(xmax, fabs(self.hn[k]))
        if self.f32:
            sl_coefficients_f32(0, n, &self.gates[0, 0], self.gw, &self.c[0], &self.tanh_c[0],
                                &self.P32[0, m, 0], self.K * self.rs, &self.coef[0, 0], n)
        elif self.per_column:  # gather the self-recurrent weights into rows first
            for z in range(4):
                for i in range(n):
                    self.urows[z, i] = self.P[i, z, m]
            sl_coefficients(0, n, &self.gates[0, 0], self.gw, &self.c[0], &self.tanh_c[0],
                            &self.urows[0, 0], n, &self.coef[0, 0], n)
        else:
            sl_coefficients(0, n, &self.gates[0, 0], self.gw, &self.c[0], &self.tanh_c[0],
                            &self.P[0, m, 0], self.K * self.rs, &self.coef[0, 0], n)
        return sl_bounds(n, &self.mode[0], r, &self.maxima[0, 0], &self.bounds[0, 0], xmax,
                         head_step, self.limit)

    cdef void _rule(self, double delta, bint learn, sl_own_rule* r) noexcept nogil:
        """The learning step's rule for the C loops: its kind and scalars, and its factor
        rows (pointers at column 0): the forget gate, A, E, B, Kc, Kh (``coef``, filled by
        _bounds_ok), w, h(t) and h(t-1)."""
        cdef Py_ssize_t z
        r.f = &self.gates[GATE_F, 0]
        r.A = &self.coef[C_A, 0]
        r.E = &self.coef[C_E, 0]
        r.B = &self.coef[C_B, 0]
        for z in range(4):
            r.Kc[z] = &self.coef[C_KC + z, 0]
            r.Kh[z] = &self.coef[C_KH + z, 0]
        r.w = &self.weff[0] if self.classify else &self.w[0]
        r.h = &self.h_new[0]
        r.hprev = &self.h[0]
        r.sgd = self.optimizer == OPT_SGD
        r.learn = learn
        r.delta = delta if learn else 0.0
        r.alpha = self.step_size
        r.beta = self.beta
        r.eps = self.eps
        r.ge = self.gamma * self.lambda_
        r.ha = self.head_step_size
        if self.rule == RULE_TD:
            r.kind = SL_TD
        elif self.rule == RULE_META:
            r.kind = SL_META
        else:
            r.kind = SL_TRACES if not learn else SL_SGD if r.sgd else SL_RMS

    cdef void _own_update(self, const sl_own_rule* rule) noexcept nogil:
        """Traces of every learning column's own parameters, then, if learning, the rule's
        step on each one's gradient estimate (sl_own: vector loops across columns, over each
        run of consecutive learning columns). A float32 step reads the factors rounded to
        float32 (``fac32``)."""
        cdef Py_ssize_t lo = 0, hi, z, n = self.n, width = self.width
        cdef sl_own_rule r = rule[0]
        cdef sl_own_rule_f32 r32
        cdef const double* rows[N_FAC]
        memset(&r32, 0, sizeof(r32))  # set below when f32; GCC cannot tell it is unused else
        for z in range(N_COEF):
            rows[z] = &self.coef[z, 0]
        rows[F_F], rows[F_W], rows[F_H], rows[F_HPREV] = r.f, r.w, r.h, r.hprev
        # rows the own loops never read (Kc[o] = Kh[i] = Kh[f] = Kh[g] = 0): not copied, their
        # copies stay zero
        rows[C_KC + GATE_O] = rows[C_KH + GATE_I] = rows[C_KH + GATE_F] = NULL
        rows[C_KH + GATE_G] = NULL
        if not self.f32 and width > n:  # factors copied into padded rows
            for z in range(N_FAC):
                if rows[z] != NULL:
                    memcpy(&self.fac64[z, 0], rows[z], n * sizeof(double))
            sl_point(&r, &self.fac64[0, 0], width)
        if self.f32:
            sl_narrow(n, N_FAC, rows, &self.fac32[0, 0], width)
            sl_point_f32(&r32, &self.fac32[0, 0], width)
            r32.kind, r32.sgd, r32.learn = r.kind, r.sgd, r.learn
            r32.delta, r32.alpha, r32.beta, r32.eps, r32.ge, r32.ha = \
                r.delta, r.alpha, r.beta, r.eps, r.ge, r.ha
        while lo < n:
            if self.mode[lo] != LEARNING:
                lo += 1
                continue
            hi = lo + 1
            while hi < n and self.mode[hi] == LEARNING:
                hi += 1
            if hi == n:  # the last run also takes the padding lanes
                hi = width
            if self.f32:
                sl_own_f32(lo, hi, self.K, self.rs, &self.P32[0, 0, 0], &self.TH32[0, 0, 0],
                           &self.TC32[0, 0, 0], &self.V32[0, 0, 0],
                           &self.AUX32[0, 0, 0] if self.aux else NULL,
                           &self.xn[0] if self.m else NULL, &r32)
            else:
                sl_own(lo, hi, self.K, self.rs, &self.P[0, 0, 0], &self.TH[0, 0, 0],
                       &self.TC[0, 0, 0], &self.V[0, 0, 0],
                       &self.AUX[0, 0, 0] if self.aux else NULL,
                       &self.xn[0] if self.m else NULL, &r)
            lo = hi

    cdef void _column_update(self, Py_ssize_t i, const sl_own_rule* r) noexcept nogil:
        """Traces of column i's lateral and stage weights, then, if learning, the rule's step
        on each one's gradient estimate: one sl_block loop over each contiguous block, with
        the column's factors (``coef``, from _bounds_ok). Regression g = -delta w_i TH';
        meta g = -delta (w_i TH' + h_i AUX) with AUX' = AUX + a delta TH' - a h_i
        (w_i TH' + h_i AUX), a the LMS step; TD g = -delta e with e the eligibility, then
        e' = gamma lambda e + w_i TH'."""
        cdef Py_ssize_t k, z, first, count
        cdef double* kcd = &self.kcd[0]
        cdef double* khd = &self.khd[0]
        cdef double Kc[4]
        cdef double Kh[4]
        for z in range(4):
            Kc[z] = self.coef[C_KC + z, i]
            Kh[z] = self.coef[C_KH + z, i]
        first = self.lat_ptr[i]
        count = self.lat_ptr[i + 1] - first
        if count:  # lateral weights: (source k, gate z) at 4 k + z, input h_j(t-1)
            for k in range(count):
                self.dl[k] = self.h[self.lat_src[first + k]]
            sl_direct(count, &self.dl[0], Kc, Kh, kcd, khd)
            sl_block(4 * count, i, &self.LP[first, 0], &self.LTH[first, 0],
                     &self.LTC[first, 0], &self.LV[first, 0],
                     &self.LAUX[first, 0] if self.aux else NULL, kcd, khd, r)
        first = self.st_ptr[i]
        count = self.st_ptr[i + 1] - first
        if count:  # stage weights: (earlier column k, gate z) at 4 k + z, input its state
            sl_direct(count, &self.hn[0], Kc, Kh, kcd, khd)
            sl_block(4 * count, i, &self.SP[first, 0], &self.STH[first, 0],
                     &self.STC[first, 0], &self.SV[first, 0],
                     &self.SAUX[first, 0] if self.aux else NULL, kcd, khd, r)

    cdef void _head_update(self, double delta) noexcept nogil:
        """Step on the linear head: dL/dw_i = -delta h_i, dL/db = -delta (TD: -delta times
        their eligibilities, step size divided by the number of columns in use). In meta mode
        the weights take the LMS step w_i += head_step_size delta h_i and the bias stays.
        Classification: each logit's row the same with delta = t_l - p_l, e = h (the head
        cannot overflow: a step moves a weight by at most alpha / sqrt(1 - beta), or alpha
        with SGD, as |t_l - p_l| <= 1 and |h_i| <= 1)."""
        cdef Py_ssize_t i, l, active = 0
        cdef double g, v, alpha = self.step_size, beta = self.beta, eps = self.eps
        cdef bint td = self.rule == RULE_TD
        if self.classify:
            for l in range(self.n_logits):  # delta: the sample weight (_class_error's 1)
                g = (self.onehot[l] - self.probs[l]) * delta
                sl_head(self.n, &self.mode[0], &self.W[l, 0], &self.WV[l, 0], &self.h_new[0],
                        g, alpha, beta, eps, self.optimizer == OPT_SGD)
                _bias_step(&self.b[l], &self.bv[l], -g, alpha, beta, eps,
                           self.optimizer == OPT_SGD)
            return
        if self.rule == RULE_META:
            for i in range(self.n):
                self.w[i] += self.head_step_size * delta * self.h_new[i]
            return
        if td:
            for i in range(self.n):
                active += self.mode[i] != INACTIVE
            alpha = alpha / (active if active > 0 else 1)
        sl_head(self.n, &self.mode[0], &self.w[0], &self.vw[0],
                &self.ew[0] if td else &self.h_new[0], delta, alpha, beta, eps,
                self.optimizer == OPT_SGD)
        _bias_step(&self.scalars[S_BIAS], &self.scalars[S_BIAS_V],
                   -delta * (self.scalars[S_BIAS_E] if td else 1.0), alpha, beta, eps,
                   self.optimizer == OPT_SGD)

    cdef void _head_eligibility(self) noexcept nogil:
        """TD: e_w <- gamma lambda e_w + h(t+1), e_b <- gamma lambda e_b + 1."""
        cdef Py_ssize_t i
        cdef double gl = self.gamma * self.lambda_
        for i in range(self.n):
            self.ew[i] = gl * self.ew[i] + self.h_new[i]
        self.scalars[S_BIAS_E] = gl * self.scalars[S_BIAS_E] + 1.0
