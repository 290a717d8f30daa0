# cython: language_level=3
"""Declarations of the C loops in _loops.h (the kernel's vector loops)."""

cdef extern from "_loops.h" nogil:
    # the per-parameter loops, compiled for several instruction sets (see _loops.h)
    enum:
        SL_TRACES
        SL_SGD
        SL_RMS
        SL_TD
        SL_META
    enum:
        # rows of ``coef``: Kc[4] from C_KC, Kh[4] from C_KH, then A, E, B
        C_KC "SL_C_KC"
        C_KH "SL_C_KH"
        C_A "SL_C_A"
        C_E "SL_C_E"
        C_B "SL_C_B"
        N_COEF "SL_N_COEF"
        # rows of ``fac32``, ``fac64``: those of ``coef``, the forget gate, w, h(t), h(t-1)
        F_F "SL_F_F"
        F_W "SL_F_W"
        F_H "SL_F_H"
        F_HPREV "SL_F_HPREV"
        N_FAC "SL_N_FAC"
    enum:
        # rows of ``maxima`` and ``bounds``: on |TH|, |TC|, |P|, |AUX| of each column
        M_TH "SL_M_TH"
        M_TC "SL_M_TC"
        M_P "SL_M_P"
        M_AUX "SL_M_AUX"
        N_MAXIMA "SL_N_MAXIMA"
    enum:
        # a column's mode (the ``mode`` array)
        INACTIVE "SL_MODE_INACTIVE"
        FROZEN "SL_MODE_FROZEN"
        LEARNING "SL_MODE_LEARNING"
    enum:
        # the gates' order in the per-parameter arrays' second axis
        GATE_I "SL_GATE_I"
        GATE_F "SL_GATE_F"
        GATE_O "SL_GATE_O"
        GATE_G "SL_GATE_G"
    ctypedef struct sl_own_rule:
        const double* f
        const double* A
        const double* E
        const double* B
        const double* Kc[4]
        const double* Kh[4]
        const double* w
        const double* h
        const double* hprev
        int kind, sgd, learn
        double delta, alpha, beta, eps, ge, ha
    ctypedef struct sl_own_rule_f32:
        const float* f
        const float* A
        const float* E
        const float* B
        const float* Kc[4]
        const float* Kh[4]
        const float* w
        const float* h
        const float* hprev
        int kind, sgd, learn
        float delta, alpha, beta, eps, ge, ha
    void sl_own(Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t K, Py_ssize_t stride, double* P,
                double* TH, double* TC, double* V, double* AUX, const double* xn,
                const sl_own_rule* r)
    void sl_own_f32(Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t K, Py_ssize_t stride, float* P,
                    float* TH, float* TC, float* V, float* AUX, const double* xn,
                    const sl_own_rule_f32* r)
    void sl_preact(Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t K, Py_ssize_t stride,
                   const double* P, const double* x, const double* h, double* out,
                   Py_ssize_t gs)
    void sl_preact_f32(Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t K, Py_ssize_t stride,
                       const float* P, const double* x, const double* h, double* out,
                       Py_ssize_t gs)
    void sl_coefficients(Py_ssize_t lo, Py_ssize_t hi, const double* gates, Py_ssize_t gs,
                         const double* cp, const double* T, const double* u, Py_ssize_t us,
                         double* coef, Py_ssize_t cs)
    void sl_coefficients_f32(Py_ssize_t lo, Py_ssize_t hi, const double* gates,
                             Py_ssize_t gs, const double* cp, const double* T, const float* u,
                             Py_ssize_t us, double* coef, Py_ssize_t cs)
    void sl_row_max(Py_ssize_t n, double* out, const double* row)
    void sl_row_max_f32(Py_ssize_t n, double* out, const float* row)
    void sl_narrow(Py_ssize_t n, Py_ssize_t rows, const double* const* src, float* dst,
                   Py_ssize_t stride)
    void sl_point "SL_POINT"(sl_own_rule* r, double* fac, Py_ssize_t width)
    void sl_point_f32 "SL_POINT"(sl_own_rule_f32* r, float* fac, Py_ssize_t width)
    bint sl_bounds(Py_ssize_t n, const Py_ssize_t* mode, const sl_own_rule* r,
                   const double* mx, double* out, double xmax, double head_step, double limit)
    void sl_head(Py_ssize_t n, const Py_ssize_t* mode, double* w, double* vw, const double* e,
                 double delta, double alpha, double beta, double eps, int sgd)
    void sl_state_stats(Py_ssize_t n, const Py_ssize_t* mode, const double* h, double r,
                        double* mean, double* var)
    void sl_direct(Py_ssize_t count, const double* d, const double* Kc, const double* Kh,
                   double* kcd, double* khd)
    void sl_extra_preact(Py_ssize_t lo, Py_ssize_t hi, const Py_ssize_t* lat_ptr,
                         const Py_ssize_t* lat_src, const double* LP, const double* h,
                         const Py_ssize_t* st_ptr, const double* SP, const double* hn,
                         double* gates, Py_ssize_t gs)
    void sl_block(Py_ssize_t n, Py_ssize_t i, double* p, double* th, double* tc, double* v,
                  double* aux, const double* kcd, const double* khd, const sl_own_rule* r)
    void sl_own_columns(Py_ssize_t n, Py_ssize_t K, const Py_ssize_t* mode, double* P,
                        double* TH, double* TC, double* V, double* AUX, const double* xn,
                        double* kcd, double* khd, const sl_own_rule* r)
    void sl_sigmoid_all(Py_ssize_t n, const double* x, double* out)
    bint sl_cell(Py_ssize_t lo, Py_ssize_t hi, double* gates, Py_ssize_t gs,
                 const Py_ssize_t* mode, const double* c, double* c_new, double* tanh_c,
                 double* h_new, double limit)
    void sl_tanh_all(Py_ssize_t n, const double* x, double* out)
    # every step runs with subnormals flushed to zero (see _loops.h), the caller's mode
    # restored on return
    unsigned sl_flush_subnormals()
    void sl_restore_fp(unsigned mode)
