/* Per-parameter arithmetic of the columnar kernel for one real type, included twice by
   _loops.h: SL_REAL double with names as written, SL_REAL float with names ending in _f32
   (SL_F). The parameters, traces and moments are SL_REAL and so is their arithmetic; the
   pre-activations they feed are summed in double. No include guard on purpose. */

typedef SL_REAL *__restrict__ SL_F(sl_rptr);
typedef const SL_REAL *__restrict__ SL_F(sl_crptr);

/* ---- one parameter: the trace recursion and the optimisers' steps ---------------------- */

/* TC' = f TC + A TH + kcd, TH' = B TC' + E TH + khd, in place; returns TH'. A constant
   gate (SL_GATE_I .. SL_GATE_G, or -1 for a mix of gates) drops the term that is 0 for it:
   an own parameter of the output gate has Kc[o] = 0 (kcd = 0), one of another gate Kh = 0
   (khd = 0); the sums round alike, and the update loops do two fewer operations per
   parameter. */
static inline SL_REAL SL_F(sl_trace)(SL_REAL *th, SL_REAL *tc, SL_REAL kcd, SL_REAL khd,
                                     SL_REAL f, SL_REAL A, SL_REAL E, SL_REAL B, int gate) {
    SL_REAL a = *th;
    SL_REAL c = f * *tc + A * a;
    if (gate != SL_GATE_O)
        c = c + kcd;
    a = B * c + E * a;
    if (gate < 0 || gate == SL_GATE_O)
        a = a + khd;
    *tc = c;
    *th = a;
    return a;
}

/* RMSProp on gradient g: v' = beta v + (1 - beta) g^2, p -= alpha g / (sqrt(v') + eps). */
static inline void SL_F(sl_rmsprop)(SL_REAL *p, SL_REAL *v, SL_REAL g, SL_REAL alpha,
                                    SL_REAL beta, SL_REAL eps) {
    SL_REAL vv = beta * *v + ((SL_REAL)1 - beta) * g * g;
    *v = vv;
    *p -= alpha * g / (SL_SQRT(vv) + eps);
}

/* TD(lambda) after the traces (a = TH'): the step on g = -delta e (SGD, or RMSProp if
   `learn`), then the eligibility e' = ge e + w a (ge = gamma lambda). */
static inline void SL_F(sl_td_step)(SL_REAL *p, SL_REAL *v, SL_REAL *e, SL_REAL a,
                                    SL_REAL delta, SL_REAL w, SL_REAL ge, SL_REAL alpha,
                                    SL_REAL beta, SL_REAL eps, int sgd, int learn) {
    SL_REAL t = *e;
    SL_REAL g = -delta * t;
    if (sgd)
        *p -= alpha * g;
    else if (learn)
        SL_F(sl_rmsprop)(p, v, g, alpha, beta, eps);
    *e = ge * t + w * a;
}

/* Meta-gradients after the traces (a = TH'): the step on g = -delta (w a + h AUX) and the
   LMS-trace update AUX' = AUX + ha delta a - ha h (w a + h AUX). */
static inline void SL_F(sl_meta_step)(SL_REAL *p, SL_REAL *v, SL_REAL *tw, SL_REAL a,
                                      SL_REAL delta, SL_REAL w, SL_REAL h, SL_REAL ha,
                                      SL_REAL alpha, SL_REAL beta, SL_REAL eps, int sgd) {
    SL_REAL t = *tw;
    SL_REAL y = w * a + h * t;
    SL_REAL g = -delta * y;
    *tw = t + ha * (delta * a - h * y);
    if (sgd)
        *p -= alpha * g;
    else
        SL_F(sl_rmsprop)(p, v, g, alpha, beta, eps);
}

/* ---- the own parameters of consecutive columns, column-innermost ------------------------ */

/* Factor rows of the learning step (pointers at column 0) and its scalars. */
typedef struct {
    const SL_REAL *f, *A, *E, *B, *Kc[4], *Kh[4], *w, *h, *hprev;
    int kind, sgd, learn;
    SL_REAL delta, alpha, beta, eps, ge, ha;
} SL_F(sl_own_rule);

/* Rows (z, k) .. (z, k + R - 1) of nl columns (row r at offset r * stride; gate: z, or -1
   if any), which share the lanes' factors: the direct input of row 0 is d[l] if d is given,
   that of any other row r d0[r] for all lanes. Up to SL_ROWS rows per pass load each factor
   once for all of them. The rows never overlap; GCC loses the restrict qualifiers when it
   inlines this into sl_own, so `ivdep` tells it (else it gives up on too many run-time alias
   checks). */
#define SL_ROWS 4
static inline __attribute__((always_inline)) void SL_F(sl_own_rows)(
        ptrdiff_t nl, int R, int gate, ptrdiff_t stride, int kind, int sgd, int learn,
        SL_F(sl_rptr) p, SL_F(sl_rptr) th, SL_F(sl_rptr) tc, SL_F(sl_rptr) v, SL_F(sl_rptr) aux,
        SL_F(sl_crptr) Kc, SL_F(sl_crptr) Kh, SL_F(sl_crptr) d, const SL_REAL *d0,
        SL_F(sl_crptr) f, SL_F(sl_crptr) A, SL_F(sl_crptr) E, SL_F(sl_crptr) B,
        SL_F(sl_crptr) w, SL_F(sl_crptr) h, const SL_F(sl_own_rule) *r) {
    SL_REAL delta = r->delta, alpha = r->alpha, beta = r->beta, eps = r->eps;
    SL_REAL ge = r->ge, ha = r->ha, scale = r->alpha * r->delta;
    /* vector loop */
#pragma GCC ivdep
    for (ptrdiff_t l = 0; l < nl; l++) {
        SL_REAL kc = Kc[l], kh = Kh[l], fl = f[l], al = A[l], el = E[l], bl = B[l];
        SL_REAL wl = w[l], hl = h[l];
        for (int q = 0; q < R; q++) {
            ptrdiff_t at = q * stride + l;
            SL_REAL dd = d && q == 0 ? d[l] : d0[q];
            SL_REAL a = SL_F(sl_trace)(&th[at], &tc[at], kc * dd, kh * dd, fl, al, el, bl,
                                       gate);
            if (kind == SL_SGD)
                p[at] += scale * wl * a;
            else if (kind == SL_RMS)
                SL_F(sl_rmsprop)(&p[at], &v[at], -delta * wl * a, alpha, beta, eps);
            else if (kind == SL_TD)
                SL_F(sl_td_step)(&p[at], &v[at], &aux[at], a, delta, wl, ge, alpha, beta, eps,
                                 sgd, learn);
            else if (kind == SL_META && learn)
                SL_F(sl_meta_step)(&p[at], &v[at], &aux[at], a, delta, wl, hl, ha, alpha,
                                   beta, eps, sgd);
        }
    }
}

/* The rows of gate z (a constant) of nl columns starting at column o (pointers at column 0
   of row (0, 0)): the features SL_ROWS rows at a time, then the self-recurrent weight (input
   h(t-1) of the column itself) and the bias (input 1) in one pass, instead of two single
   rows: one sweep fewer over the column's data. */
static inline __attribute__((always_inline)) void SL_F(sl_own_gate)(
        ptrdiff_t nl, int z, int kind, int sgd, int learn, ptrdiff_t K, ptrdiff_t stride,
        SL_REAL *P, SL_REAL *TH, SL_REAL *TC, SL_REAL *V, SL_REAL *AUX, const double *xn,
        const SL_F(sl_own_rule) *r, ptrdiff_t o) {
    SL_REAL d0[SL_ROWS] = {0};
    const SL_REAL *Kc = r->Kc[z] + o, *Kh = r->Kh[z] + o;
    const SL_REAL *f = r->f + o, *A = r->A + o, *E = r->E + o, *B = r->B + o;
    const SL_REAL *w = r->w + o, *h = r->h + o;
    for (ptrdiff_t k = 0; k < K; ) {
        ptrdiff_t at = (z * K + k) * stride + o;
        SL_REAL *aux = AUX ? AUX + at : NULL;
        if (k + SL_ROWS <= K - 2) {  /* SL_ROWS features */
            for (int q = 0; q < SL_ROWS; q++)
                d0[q] = (SL_REAL)xn[k + q];
            SL_F(sl_own_rows)(nl, SL_ROWS, z, stride, kind, sgd, learn, P + at, TH + at,
                              TC + at, V + at, aux, Kc, Kh, NULL, d0, f, A, E, B, w, h, r);
            k += SL_ROWS;
        } else if (k == K - 2) {  /* the self-recurrent weight and the bias */
            d0[1] = 1;
            SL_F(sl_own_rows)(nl, 2, z, stride, kind, sgd, learn, P + at, TH + at, TC + at,
                              V + at, aux, Kc, Kh, r->hprev + o, d0, f, A, E, B, w, h, r);
            k += 2;
        } else {  /* one of the last features */
            d0[0] = (SL_REAL)xn[k];
            SL_F(sl_own_rows)(nl, 1, z, stride, kind, sgd, learn, P + at, TH + at, TC + at,
                              V + at, aux, Kc, Kh, NULL, d0, f, A, E, B, w, h, r);
            k += 1;
        }
    }
}

/* The four gates' rows of nl columns starting at column o, each gate a constant. */
static inline __attribute__((always_inline)) void SL_F(sl_own_lanes)(
        ptrdiff_t nl, int kind, int sgd, int learn, ptrdiff_t K, ptrdiff_t stride, SL_REAL *P,
        SL_REAL *TH, SL_REAL *TC, SL_REAL *V, SL_REAL *AUX, const double *xn,
        const SL_F(sl_own_rule) *r, ptrdiff_t o) {
#define SL_GATE(z) SL_F(sl_own_gate)(nl, z, kind, sgd, learn, K, stride, P, TH, TC, V, AUX, \
                                     xn, r, o)
    SL_GATE(SL_GATE_I);
    SL_GATE(SL_GATE_F);
    SL_GATE(SL_GATE_O);
    SL_GATE(SL_GATE_G);
#undef SL_GATE
}

static inline __attribute__((always_inline)) void SL_F(sl_own_kind)(
        ptrdiff_t lo, ptrdiff_t hi, int kind, int sgd, int learn, ptrdiff_t K, ptrdiff_t stride,
        SL_REAL *P, SL_REAL *TH, SL_REAL *TC, SL_REAL *V, SL_REAL *AUX, const double *xn,
        const SL_F(sl_own_rule) *r) {
    ptrdiff_t o = lo;
    const ptrdiff_t block = SL_BLOCK_BYTES / sizeof(SL_REAL);
    for (; o + block <= hi; o += block)
        SL_F(sl_own_lanes)(block, kind, sgd, learn, K, stride, P, TH, TC, V, AUX, xn, r, o);
    if (o < hi)
        SL_F(sl_own_lanes)(hi - o, kind, sgd, learn, K, stride, P, TH, TC, V, AUX, xn, r, o);
}

/* Traces and the rule's step for the own parameters of columns lo .. hi - 1. */
SL_CLONES static void SL_F(sl_own)(ptrdiff_t lo, ptrdiff_t hi, ptrdiff_t K, ptrdiff_t stride,
                                   SL_REAL *P, SL_REAL *TH, SL_REAL *TC, SL_REAL *V,
                                   SL_REAL *AUX, const double *xn,
                                   const SL_F(sl_own_rule) *r) {
#define SL_OWN(kind, sgd, learn) SL_F(sl_own_kind)(lo, hi, kind, sgd, learn, K, stride, P, TH, \
                                                   TC, V, AUX, xn, r)
    SL_BY_KIND(r, SL_OWN);
#undef SL_OWN
}

/* Pre-activations of the four gates for columns lo .. hi - 1, in double, into row z of
   `out` (stride gs): sum_k P[z, k] x[k] + P[z, K - 2] h(t-1) + P[z, K - 1] (P at row (0, 0),
   column 0). One call for the four gates: a small network's step is mostly such set-ups.
   Blocks of SL_PRE_LANES columns keep their sums in two 4-lane vectors over all K rows (GCC
   vector extensions: two ymm or four xmm registers by clone), so each parameter is one load
   instead of a load, a load and a store of the sum; the last columns sum in `out`. Both add
   in the same order, so they round alike. Not one 8-lane vector: AVX2 code moves it through
   the stack in halves.
   A block reads K rows 64 bytes at a time, more streams than the hardware prefetcher keeps
   ahead of: `ahead` (a constant per instance) prefetches each row SL_PRE_AHEAD bytes on.
   Code without AVX (`wide` 0: the baseline clone) keeps a 4-lane vector of doubles in
   memory, not in registers, and sums in four 2-lane vectors instead, which AVX code runs
   slower (float32 twice as long). */
typedef SL_REAL SL_F(sl_quad) __attribute__((vector_size(4 * sizeof(SL_REAL))));
typedef SL_REAL SL_F(sl_pair) __attribute__((vector_size(2 * sizeof(SL_REAL))));
static inline __attribute__((always_inline)) void SL_F(sl_preact_pairs)(
        const SL_REAL *row, ptrdiff_t K, ptrdiff_t stride, const SL_REAL *u, const SL_REAL *b,
        const double *x, const double *h, double *o, int ahead) {
    sl_pair_d acc[SL_PRE_LANES / 2] = {{0}}, hv;
    SL_F(sl_pair) rv;
    for (ptrdiff_t k = 0; k < K - 2; k++, row += stride) {
        if (ahead)
            __builtin_prefetch((const char *)row + SL_PRE_AHEAD);
        for (int j = 0; j < SL_PRE_LANES / 2; j++) {
            memcpy(&rv, row + 2 * j, sizeof rv);
            acc[j] += SL_WIDEN2(rv) * x[k];
        }
    }
    for (int j = 0; j < SL_PRE_LANES / 2; j++) {
        memcpy(&hv, h + 2 * j, sizeof hv);
        memcpy(&rv, u + 2 * j, sizeof rv);
        acc[j] = acc[j] + SL_WIDEN2(rv) * hv;
        memcpy(&rv, b + 2 * j, sizeof rv);
        acc[j] = acc[j] + SL_WIDEN2(rv);
        memcpy(o + 2 * j, &acc[j], sizeof acc[j]);
    }
}
static inline __attribute__((always_inline)) void SL_F(sl_preact_rows)(
        ptrdiff_t lo, ptrdiff_t hi, ptrdiff_t K, ptrdiff_t stride, const SL_REAL *P,
        const double *x, const double *h, double *out, ptrdiff_t gs, int ahead, int wide) {
    for (int z = 0; z < 4; z++) {
        const SL_REAL *Pz = P + z * K * stride;
        const SL_REAL *u = Pz + (K - 2) * stride, *b = Pz + (K - 1) * stride;
        double *o = out + z * gs;
        ptrdiff_t i0 = lo;
        for (; !wide && i0 + SL_PRE_LANES <= hi; i0 += SL_PRE_LANES)
            SL_F(sl_preact_pairs)(Pz + i0, K, stride, u + i0, b + i0, x, h + i0, o + i0,
                                  ahead);
        for (; i0 + SL_PRE_LANES <= hi; i0 += SL_PRE_LANES) {
            sl_quad_d acc0 = {0}, acc1 = {0}, h0, h1;
            SL_F(sl_quad) r0, r1;
            for (ptrdiff_t k = 0; k < K - 2; k++) {
                if (ahead)
                    __builtin_prefetch((const char *)(Pz + k * stride + i0) + SL_PRE_AHEAD);
                memcpy(&r0, Pz + k * stride + i0, sizeof r0);
                memcpy(&r1, Pz + k * stride + i0 + 4, sizeof r1);
                acc0 += SL_WIDEN(r0) * x[k];
                acc1 += SL_WIDEN(r1) * x[k];
            }
            if (ahead) {
                __builtin_prefetch((const char *)(u + i0) + SL_PRE_AHEAD);
                __builtin_prefetch((const char *)(b + i0) + SL_PRE_AHEAD);
            }
            memcpy(&h0, h + i0, sizeof h0);
            memcpy(&h1, h + i0 + 4, sizeof h1);
            memcpy(&r0, u + i0, sizeof r0);
            memcpy(&r1, u + i0 + 4, sizeof r1);
            acc0 = acc0 + SL_WIDEN(r0) * h0;
            acc1 = acc1 + SL_WIDEN(r1) * h1;
            memcpy(&r0, b + i0, sizeof r0);
            memcpy(&r1, b + i0 + 4, sizeof r1);
            acc0 = acc0 + SL_WIDEN(r0);
            acc1 = acc1 + SL_WIDEN(r1);
            memcpy(o + i0, &acc0, sizeof acc0);
            memcpy(o + i0 + 4, &acc1, sizeof acc1);
        }
        for (ptrdiff_t i = i0; i < hi; i++)
            o[i] = 0.0;
        for (ptrdiff_t k = 0; k < K - 2; k++) {
            const SL_REAL *row = Pz + k * stride;
            double xk = x[k];
            for (ptrdiff_t i = i0; i < hi; i++)
                o[i] += (double)row[i] * xk;
        }
        for (ptrdiff_t i = i0; i < hi; i++)
            o[i] = o[i] + (double)u[i] * h[i] + (double)b[i];
    }
}

/* sl_preact_rows, prefetching when the rows read exceed SL_PRE_CACHED bytes: out of cache
   the prefetches pay, in cache they cost time, so small networks run without. */
SL_CLONES static void SL_F(sl_preact)(ptrdiff_t lo, ptrdiff_t hi, ptrdiff_t K,
                                      ptrdiff_t stride, const SL_REAL *P, const double *x,
                                      const double *h, double *out, ptrdiff_t gs) {
    int ahead = (size_t)(4 * K * (hi - lo)) * sizeof(SL_REAL) > SL_PRE_CACHED;
    if (!SL_AVX_CODE())
        SL_F(sl_preact_rows)(lo, hi, K, stride, P, x, h, out, gs, ahead, 0);
    else if (ahead)
        SL_F(sl_preact_rows)(lo, hi, K, stride, P, x, h, out, gs, 1, 1);
    else
        SL_F(sl_preact_rows)(lo, hi, K, stride, P, x, h, out, gs, 0, 1);
}

/* The trace-recursion factors of columns lo .. hi - 1 (PAPER.md section 3), rows of `coef`
   (stride cs): Kc[z] = d c / d pre_z, Kh[o] = d h / d pre_o, A = sum_z Kc[z] u_z,
   E = Kh[o] u_o, B = d h / d c; Kc[o] and Kh[i], Kh[f], Kh[g] stay 0. Inputs: the gate rows
   (stride gs; logistic i, f, o, tanh g), c(t-1), tanh c(t), u (row z at u + z us). */
SL_CLONES static void SL_F(sl_coefficients)(ptrdiff_t lo, ptrdiff_t hi, const double *gates,
                                            ptrdiff_t gs, const double *cp, const double *T,
                                            const SL_REAL *u, ptrdiff_t us, double *coef,
                                            ptrdiff_t cs) {
    const double *gi = gates, *gf = gates + gs, *go = gates + 2 * gs, *gg = gates + 3 * gs;
    /* vector loop */
#pragma GCC ivdep
    for (ptrdiff_t i = lo; i < hi; i++) {  /* coef overlaps no input */
        double kci = gg[i] * (gi[i] * (1.0 - gi[i]));
        double kcf = cp[i] * (gf[i] * (1.0 - gf[i]));
        double kcg = gi[i] * (1.0 - gg[i] * gg[i]);
        double kho = T[i] * (go[i] * (1.0 - go[i]));
        coef[(SL_C_KC + 0) * cs + i] = kci;
        coef[(SL_C_KC + 1) * cs + i] = kcf;
        coef[(SL_C_KC + 3) * cs + i] = kcg;
        coef[(SL_C_KH + 2) * cs + i] = kho;
        coef[SL_C_A * cs + i] = kci * (double)u[i] + kcf * (double)u[us + i]
            + kcg * (double)u[3 * us + i];
        coef[SL_C_E * cs + i] = kho * (double)u[2 * us + i];
        coef[SL_C_B * cs + i] = go[i] * (1.0 - T[i] * T[i]);
    }
}

/* out[i] = max(out[i], |row[i]|) for i < n (the exact per-column maxima). */
SL_CLONES static void SL_F(sl_row_max)(ptrdiff_t n, double *out, const SL_REAL *row) {
    /* vector loop */
    for (ptrdiff_t i = 0; i < n; i++) {
        double a = fabs((double)row[i]);
        out[i] = out[i] > a ? out[i] : a;
    }
}
