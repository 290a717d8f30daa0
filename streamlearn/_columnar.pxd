# cython: language_level=3
"""The columnar kernel's C interface (pyx/_columnar.pyx implements it).

A module that steps a kernel cimports it from here: ``from streamlearn._columnar cimport
ColumnarKernel``. Its calls are C calls, with no Python frame between the caller and the
loops. Two entry points run without the GIL and return a status (``STATUS_*``):
:meth:`ColumnarKernel.forward` computes the next states into scratch, which become the
pending step, and :meth:`ColumnarKernel.commit` makes the pending step the new state. Their
``*_checked`` forms take the GIL's side: they release it for long steps, flush subnormals and
raise the FloatingPointError a status stands for. Nothing changes when a step fails.
"""
from _loops cimport sl_own_rule


cdef enum:
    # what a step returns (raise_for_status turns each into its FloatingPointError)
    STATUS_OK = 0
    STATUS_ERROR = 1       # the error delta is not finite or too large
    STATUS_DIVERGING = 2   # the update would push a value beyond the limit
    STATUS_FORWARD = 3     # the forward step produced a non-finite or overflowing value


cdef struct Maxima:
    # running maxima of |TH|, |TC|, |p|, |AUX| of a column (exact rescans, _refresh_maxima)
    double mth, mtc, mp, maux


cpdef raise_for_status(int status, double delta)


cdef class ColumnarKernel:
    """State views plus the forward and commit steps of a columnar LSTM network."""

    cdef double[:, :, :] P, TH, TC, V, AUX     # (4, K, n): column-innermost, or (n, 4, K)
    cdef float[:, :, :] P32, TH32, TC32, V32, AUX32  # the same when f32
    cdef Py_ssize_t rs             # column-innermost: elements from one row to the next
    cdef bint f32                  # the own parameters are float32
    cdef bint per_column           # P ... are (n, 4, K) C-contiguous: run column by column
    cdef double[:, ::1] urows      # per_column: (4, n) self-recurrent weights, gathered
    cdef Py_ssize_t width          # lanes the learning step runs: n, or n padded (below)
    cdef float[:, ::1] fac32       # (N_FAC, width): factor rows of a float32 step
    cdef double[:, ::1] fac64      # (N_FAC, width): the same in float64 when width > n
    cdef double limit              # LIMIT, or LIMIT_F32 for float32 parameters
    cdef double[:, ::1] LP, LTH, LTC, LV, LAUX, SP, STH, STC, SV, SAUX
    cdef const Py_ssize_t[::1] lat_ptr, lat_src, st_ptr, mode
    cdef Py_ssize_t[::1] run_end   # the forward step's runs of columns: one per stage
    cdef double[::1] h, c, w, vw, ew, scalars, x_mean, x_var, x_count, x_clipped
    cdef double[::1] hs_mean, hs_var
    cdef bint classify             # the classification rule: the head below, not w
    cdef double[:, ::1] W, WV      # (logits, n) its weights, their second moment
    cdef double[::1] b, bv         # (logits,) its biases, their second moment
    cdef Py_ssize_t n_logits       # 1 for two classes (logistic), else one per class
    # scratch of the pending forward step
    cdef double[::1] xn, new_mean, new_var, clipped, hn
    cdef double[:, ::1] gates      # (4, gw) activations, gate-major (contiguous per gate)
    cdef double[::1] h_new, c_new, tanh_c  # (gw,)
    cdef Py_ssize_t gw             # n rounded up to 8 lanes: sl_cell runs whole vectors
    cdef double[::1] c_pad         # (gw,) c, then zeros (sl_cell's input; commit keeps it)
    cdef Py_ssize_t[::1] mode_pad  # (gw,) mode, then INACTIVE
    cdef double[:, ::1] maxima     # (4, n): bounds on |TH|, |TC|, |P|, |AUX| per column
    cdef double[:, ::1] bounds     # (4, n): the same after the pending commit
    cdef double[:, ::1] coef       # (N_COEF, n): trace-recursion factors of the pending commit
    cdef double[::1] x_in          # (m,) inputs of the pending forward step
    cdef double[::1] probs, onehot  # (logits,) the class probabilities, the target
    cdef double[::1] weff          # (n,) -dL/dh of the pending commit (classification)
    cdef double[::1] kcd, khd      # direct-input terms of a column's lateral or stage weights
    cdef double[::1] dl            # a column's lateral inputs h_j(t-1), gathered
    cdef Py_ssize_t commits
    cdef double y_hat_n, y_hat     # the pending step's prediction: in the head's units, in y's
    cdef Py_ssize_t n, m, K        # columns, inputs, parameters per gate of a column (m + 2)
    cdef bint pending, aux
    cdef bint stages               # some column has stage weights (reads hn)
    cdef readonly bint stage_lag   # stage weights read the earlier stages' previous states
    cdef bint release_gil          # single steps release the GIL only when they are long
    cdef readonly int optimizer, rule
    cdef readonly double step_size, head_step_size, beta, eps, decay, var_floor, gamma, lambda_
    cdef readonly bint normalize, normalize_target
    cdef readonly double delta        # the error of the last commit (0 when nothing was learned)
    cdef readonly bint learned        # the last commit took a learning step
    cdef readonly bint detached       # dropped by its network (detach): no longer stepped

    # ---- entry points -----------------------------------------------------------------------
    cdef int forward(self, const double* x) noexcept nogil
    cdef int commit(self, double y, bint learn, double weight, double* delta) noexcept nogil
    cdef double forward_checked(self, const double* x) except? -1.0
    cdef double commit_checked(self, double y, bint learn, double weight) except? -1.0

    # ---- the steps' phases ------------------------------------------------------------------
    cdef void _refresh_maxima(self) noexcept nogil
    cdef void _store_maxima(self, Py_ssize_t i, Maxima* s) noexcept nogil
    cdef void _stage_inputs(self, const double* h, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil
    cdef double _y_scale(self) noexcept nogil
    cdef double _error(self, double y, bint learn, double* y_mean, double* y_var,
                       double* y_taken) noexcept nogil
    cdef bint _class_probabilities(self) noexcept nogil
    cdef double _class_error(self, double y) noexcept nogil
    cdef double _head_step_bound(self, double delta, bint learn, bint td) noexcept nogil
    cdef void _rule(self, double delta, bint learn, sl_own_rule* r) noexcept nogil
    cdef bint _bounds_ok(self, const sl_own_rule* r, double head_step) noexcept nogil
    cdef void _update_parameters(self, const sl_own_rule* r) noexcept nogil
    cdef void _own_update(self, const sl_own_rule* rule) noexcept nogil
    cdef void _column_update(self, Py_ssize_t i, const sl_own_rule* r) noexcept nogil
    cdef void _head_update(self, double delta) noexcept nogil
    cdef void _head_eligibility(self) noexcept nogil
    cdef void _advance_state(self) noexcept nogil
    cdef void _update_statistics(self, double y, bint learn, double y_mean, double y_var,
                                 double y_taken) noexcept nogil
    cdef double _target(self, double y, double* mean, double* var,
                        double* taken) noexcept nogil
