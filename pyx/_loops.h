/* Per-parameter loops of the columnar kernel (pyx/_columnar.pyx).

   Every parameter follows the trace recursion (PAPER.md section 3):
       TC' = f TC + A TH + Kc[gate] d,    TH' = B TC' + E TH + Kh[gate] d,
   with f, A, E, B, Kc, Kh the factors of its column and d its direct input, then takes the
   learning rule's step. A column's own parameters run column-innermost (sl_own: the factors
   are vector lanes, one loop across columns); its lateral and stage weights run as one block
   per column with scalar factors (sl_traces .. sl_meta). Both use the same one-parameter
   steps (sl_trace, sl_rmsprop, sl_td_step, sl_meta_step). The loops are in C so that GCC
   can build each one for several instruction sets and pick the best at load time
   (target_clones: AVX-512, AVX2, baseline x86-64). The module is compiled with
   -ffp-contract=off: no fused multiply-add, so every clone rounds exactly as the baseline
   does and results are bit-identical across machines (each parameter's arithmetic is
   independent; no reductions). Each loop marked `vector loop` must vectorise in the AVX2 and
   the AVX-512 clone alike (tests/test_vectorised.py): AVX-512's masks hide branches that AVX2
   code cannot remove, and such a loop then runs scalar on an AVX2-only CPU. */
#ifndef STREAMLEARN_LOOPS_H
#define STREAMLEARN_LOOPS_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(STREAMLEARN_NO_CLONES)
/* unused: a module that only cimports the kernel's interface (streamlearn/_columnar.pxd)
   includes this header without calling the loops */
#define SL_CLONES __attribute__((unused, target_clones("arch=x86-64-v4", "arch=x86-64-v3", \
                                                       "default")))
/* true in the AVX2 and AVX-512 clones: the loader runs one of them exactly when the CPU has
   x86-64-v3 */
#define SL_AVX_CODE() __builtin_cpu_supports("x86-64-v3")
#else
#define SL_CLONES __attribute__((unused))
#if defined(__AVX__)
#define SL_AVX_CODE() 1
#else
#define SL_AVX_CODE() 0
#endif
#endif

/* Subnormals: a trace whose column forgets (f near 0) decays geometrically into the
   subnormal range (below 1.2e-38 in float32 within tens of steps, 2.2e-308 in float64 later),
   and Intel cores take a microcode assist, about a hundred cycles, for every operation that
   reads or makes one. sl_flush_subnormals sets flush-to-zero and denormals-are-zero (x86
   MXCSR bits FTZ 0x8000, DAZ 0x40) for the kernel's steps and returns the caller's mode, which
   sl_restore_fp puts back: such a value counts as 0, a change far below the rounding of
   anything it is added to. Elsewhere both are no-ops. */
#if defined(__x86_64__) || defined(__SSE2__)
#include <xmmintrin.h>
static inline unsigned sl_flush_subnormals(void) {
    unsigned mode = _mm_getcsr();
    _mm_setcsr(mode | 0x8040u);
    return mode;
}
static inline void sl_restore_fp(unsigned mode) { _mm_setcsr(mode); }
#else
static inline unsigned sl_flush_subnormals(void) { return 0; }
static inline void sl_restore_fp(unsigned mode) { (void)mode; }
#endif

typedef double *__restrict__ sl_ptr;
typedef const double *__restrict__ sl_cptr;
/* sl_preact sums blocks of SL_PRE_LANES columns as two GCC vectors of 4 doubles (four of 2
   in code without AVX); it prefetches SL_PRE_AHEAD bytes ahead in each row when it reads
   more than SL_PRE_CACHED bytes of parameters (beyond a core's L2 cache) */
#define SL_PRE_LANES 8
#define SL_PRE_AHEAD 512
#define SL_PRE_CACHED (2u << 20)
typedef double sl_quad_d __attribute__((vector_size(4 * sizeof(double))));
typedef double sl_pair_d __attribute__((vector_size(2 * sizeof(double))));
#define SL_WIDEN2(v) ((sl_pair_d){(double)(v)[0], (double)(v)[1]})
/* A 4-lane vector (float or double) in double, lane by lane: one vcvtps2pd for float with
   AVX. GCC 12 turns __builtin_convertvector(v, sl_quad_d) of floats into two 2-lane
   conversions joined through the stack. A macro: a function
   returning a 32-byte vector draws GCC's ABI note (-Wpsabi) in the baseline clone. */
#define SL_WIDEN(v) ((sl_quad_d){(double)(v)[0], (double)(v)[1], (double)(v)[2], (double)(v)[3]})

/* `take ? a : b` as a bitwise select on a mask. GCC turns a plain `?:` on doubles into a
   branch when one side is a constant (sl_clamp) or when it can sink the other side's
   arithmetic into it (the outputs of sl_cell and sl_bounds); with AVX-512 it if-converts
   such branches into masked operations, with AVX2 it cannot (a division may not be
   speculated), and the loops then run scalar. */
static inline double sl_select(int take, double a, double b) {
    long long ab, bb, mask = -(long long)(take != 0);
    memcpy(&ab, &a, sizeof ab);
    memcpy(&bb, &b, sizeof bb);
    ab = (ab & mask) | (bb & ~mask);
    memcpy(&a, &ab, sizeof a);
    return a;
}

/* ---- layout and the per-parameter arithmetic (for float64 and float32: _own.h) ---------- */

/* The own parameters are stored (4, K, n): row (z, k) holds parameter (gate z, input k) of
   every column, so each per-column factor is a vector lane and one loop runs over the
   columns of a block. A block is SL_BLOCK_BYTES of each row (1,024 float64 or 2,048 float32
   columns): the block's factors stay in cache while all 4 K rows stream past. Blocks of
   16 .. 8,192 float64 columns were measured: 512 .. 2,048 came out best. Inputs k < K - 2 are the normalised features
   (one value for all columns), K - 2 the column's own h(t-1), K - 1 the bias (input 1). Factor rows (pointers at the first column): f, A, E, B and
   Kc[z], Kh[z] (the column's trace-recursion factors), w (head weights), h (new states). */
enum { SL_TRACES = 0, SL_SGD = 1, SL_RMS = 2, SL_TD = 3, SL_META = 4 };
/* A column's mode: not added yet, frozen (an earlier stage), learning. */
enum { SL_MODE_INACTIVE = 0, SL_MODE_FROZEN = 1, SL_MODE_LEARNING = 2 };
/* The gates, in the order of the gate rows: input, forget, output, candidate. */
enum { SL_GATE_I = 0, SL_GATE_F = 1, SL_GATE_O = 2, SL_GATE_G = 3 };
/* Rows of the factor array `coef` (N_COEF, n): Kc[4], Kh[4], A, E, B; a copy of the
   factors (N_FAC rows, padded) adds the forget gate, w, h(t) and h(t-1). */
enum { SL_C_KC = 0, SL_C_KH = 4, SL_C_A = 8, SL_C_E = 9, SL_C_B = 10, SL_N_COEF = 11 };
enum { SL_F_F = 11, SL_F_W = 12, SL_F_H = 13, SL_F_HPREV = 14, SL_N_FAC = 15 };
/* Point the factor rows of a rule (sl_own_rule or sl_own_rule_f32) at such a copy. */
#define SL_POINT(r, fac, width) do {                                                   \
        (r)->f = (fac) + SL_F_F * (width);                                             \
        (r)->A = (fac) + SL_C_A * (width);                                             \
        (r)->E = (fac) + SL_C_E * (width);                                             \
        (r)->B = (fac) + SL_C_B * (width);                                             \
        for (int z_ = 0; z_ < 4; z_++) {                                               \
            (r)->Kc[z_] = (fac) + (SL_C_KC + z_) * (width);                            \
            (r)->Kh[z_] = (fac) + (SL_C_KH + z_) * (width);                            \
        }                                                                              \
        (r)->w = (fac) + SL_F_W * (width);                                             \
        (r)->h = (fac) + SL_F_H * (width);                                             \
        (r)->hprev = (fac) + SL_F_HPREV * (width);                                     \
    } while (0)
/* BODY(kind, sgd, learn) with the constants of rule r, so that each rule gets a loop of its
   own with no branch inside: AVX2 code cannot if-convert a branch around a division (AVX-512
   masks it), so a branch would make the TD and meta loops scalar. TD takes the SGD step whether or not it learns (delta is 0 then) and RMSProp's
   only when learning; meta learns nothing but the traces when not learning. */
#define SL_BY_KIND(r, BODY) do {                                                       \
        switch ((r)->kind) {                                                           \
        case SL_TRACES: BODY(SL_TRACES, 0, 0); break;                                  \
        case SL_SGD: BODY(SL_SGD, 1, 1); break;                                        \
        case SL_RMS: BODY(SL_RMS, 0, 1); break;                                        \
        case SL_TD:                                                                    \
            if ((r)->sgd) BODY(SL_TD, 1, 1);                                           \
            else if ((r)->learn) BODY(SL_TD, 0, 1);                                    \
            else BODY(SL_TD, 0, 0);                                                    \
            break;                                                                     \
        default:                                                                       \
            if (!(r)->learn) BODY(SL_TRACES, 0, 0);                                    \
            else if ((r)->sgd) BODY(SL_META, 1, 1);                                    \
            else BODY(SL_META, 0, 1);                                                  \
            break;                                                                     \
        }                                                                              \
    } while (0)
#ifndef SL_BLOCK_BYTES
#define SL_BLOCK_BYTES 8192
#endif

#define SL_REAL double
#define SL_F(name) name
#define SL_SQRT sqrt
#include "_own.h"
#undef SL_REAL
#undef SL_F
#undef SL_SQRT
#define SL_REAL float
#define SL_F(name) name##_f32
#define SL_SQRT sqrtf
#include "_own.h"
#undef SL_REAL
#undef SL_F
#undef SL_SQRT

/* dst[r * stride + i] = (float) src[r][i] for rows r < rows of n values (the factor rows
   of a float32 step); a row whose src is NULL keeps its values. */
SL_CLONES static void sl_narrow(ptrdiff_t n, ptrdiff_t rows, const double *const *src,
                                float *dst, ptrdiff_t stride) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        if (!src[r])
            continue;
        /* vector loop */
        for (ptrdiff_t i = 0; i < n; i++)
            dst[r * stride + i] = (float)src[r][i];
    }
}

/* Direct-input terms of a column's lateral or stage weights: entry e = 4 j + z has gate z
   and input d[j]; kcd[e] = Kc[z] d[j], khd[e] = Kh[z] d[j]. The four gates of an input are
   one 4-lane vector (GCC had vectorised across inputs, with a shuffle per product). */
SL_CLONES static void sl_direct(ptrdiff_t count, sl_cptr d, const double *Kc, const double *Kh,
                                sl_ptr kcd, sl_ptr khd) {
    sl_quad_d kc = {Kc[0], Kc[1], Kc[2], Kc[3]}, kh = {Kh[0], Kh[1], Kh[2], Kh[3]};
    for (ptrdiff_t j = 0; j < count; j++) {
        sl_quad_d c = kc * d[j], h = kh * d[j];
        memcpy(kcd + 4 * j, &c, sizeof c);
        memcpy(khd + 4 * j, &h, sizeof h);
    }
}

/* The lateral and stage terms of the pre-activations of columns lo .. hi - 1, added to the
   gate rows (stride gs): column i's lateral weights (rows lat_ptr[i] .. lat_ptr[i + 1] of
   LP, (count, 4): gate innermost) on h(t-1) of their sources lat_src, then its stage weights
   (rows st_ptr[i] .. st_ptr[i + 1] of SP) on hn, the earlier stages' states, in order. The
   four gates' sums are one 4-lane vector and each adds in input order, as one scalar sum per
   gate did (four gathers of each source's state instead of one). */
SL_CLONES static void sl_extra_preact(ptrdiff_t lo, ptrdiff_t hi, const ptrdiff_t *lat_ptr,
                                      const ptrdiff_t *lat_src, const double *LP,
                                      const double *h, const ptrdiff_t *st_ptr,
                                      const double *SP, const double *hn, double *gates,
                                      ptrdiff_t gs) {
    for (ptrdiff_t i = lo; i < hi; i++) {
        sl_quad_d acc = {gates[i], gates[gs + i], gates[2 * gs + i], gates[3 * gs + i]}, w;
        for (ptrdiff_t k = lat_ptr[i]; k < lat_ptr[i + 1]; k++) {
            memcpy(&w, LP + 4 * k, sizeof w);
            acc = acc + w * h[lat_src[k]];
        }
        for (ptrdiff_t k = st_ptr[i]; k < st_ptr[i + 1]; k++) {
            memcpy(&w, SP + 4 * k, sizeof w);
            acc = acc + w * hn[k - st_ptr[i]];
        }
        for (int z = 0; z < 4; z++)
            gates[z * gs + i] = acc[z];
    }
}

/* ---- a block of parameters of one column (lateral and stage weights; the own parameters
   of small float64 networks) --------------------------------------------------------------- */

/* n consecutive parameters of one column with direct-input terms kcd, khd and the column's
   factors f, A, E, B, head weight w and new state h: the traces, then the step of rule
   `kind` with r's scalars, as sl_own_rows takes it across columns: regression
   g = -delta w TH' (SGD p += alpha delta w TH'), TD sl_td_step, meta sl_meta_step (if
   learning); SL_TRACES only the traces. */
static inline __attribute__((always_inline)) void sl_block_kind(
        ptrdiff_t n, int kind, int sgd, int learn, sl_ptr p, sl_ptr th, sl_ptr tc, sl_ptr v,
        sl_ptr aux, sl_cptr kcd, sl_cptr khd, double f, double A, double E, double B, double w,
        double h, const sl_own_rule *r) {
    double delta = r->delta, alpha = r->alpha, beta = r->beta, eps = r->eps;
    double ge = r->ge, ha = r->ha, scale = r->alpha * r->delta * w, dw = -r->delta * w;
    /* vector loop */
#pragma GCC ivdep
    for (ptrdiff_t k = 0; k < n; k++) {  /* restrict is lost when inlined: no overlap */
        double a = sl_trace(&th[k], &tc[k], kcd[k], khd[k], f, A, E, B, -1);
        if (kind == SL_SGD)
            p[k] += scale * a;
        else if (kind == SL_RMS)
            sl_rmsprop(&p[k], &v[k], dw * a, alpha, beta, eps);
        else if (kind == SL_TD)
            sl_td_step(&p[k], &v[k], &aux[k], a, delta, w, ge, alpha, beta, eps, sgd, learn);
        else if (kind == SL_META && learn)
            sl_meta_step(&p[k], &v[k], &aux[k], a, delta, w, h, ha, alpha, beta, eps, sgd);
    }
}

/* A block of column i's lateral or stage weights (factors at column i of r's rows). */
SL_CLONES static void sl_block(ptrdiff_t n, ptrdiff_t i, sl_ptr p, sl_ptr th, sl_ptr tc,
                               sl_ptr v, sl_ptr aux, sl_cptr kcd, sl_cptr khd,
                               const sl_own_rule *r) {
#define SL_BLOCK(kind, sgd, learn) sl_block_kind(n, kind, sgd, learn, p, th, tc, v, aux, kcd, \
                                                 khd, r->f[i], r->A[i], r->E[i], r->B[i], \
                                                 r->w[i], r->h[i], r)
    SL_BY_KIND(r, SL_BLOCK);
#undef SL_BLOCK
}

/* The own parameters of the learning columns of a small float64 network, stored (n, 4, K)
   in C order: per column, the direct-input terms of its 4 K parameters (entry z K + k has
   gate z and input k: the features xn, then h_i(t-1), then 1) into kcd and khd, then one
   sl_block_kind loop over all 4 K. One call for all columns: a 10-column step was mostly
   per-column calls. */
static inline __attribute__((always_inline)) void sl_columns_kind(
        ptrdiff_t n, int kind, int sgd, int learn, ptrdiff_t K, const ptrdiff_t *mode,
        double *P, double *TH, double *TC, double *V, double *AUX, const double *xn,
        sl_ptr kcd, sl_ptr khd, const sl_own_rule *r) {
    for (ptrdiff_t i = 0; i < n; i++) {
        if (mode[i] != SL_MODE_LEARNING)
            continue;
        double hp = r->hprev[i];
        for (int z = 0; z < 4; z++) {
            double kc = r->Kc[z][i], kh = r->Kh[z][i];
            for (ptrdiff_t k = 0; k < K - 2; k++) {
                kcd[z * K + k] = kc * xn[k];
                khd[z * K + k] = kh * xn[k];
            }
            kcd[z * K + K - 2] = kc * hp;
            khd[z * K + K - 2] = kh * hp;
            kcd[z * K + K - 1] = kc;
            khd[z * K + K - 1] = kh;
        }
        ptrdiff_t at = i * 4 * K;
        sl_block_kind(4 * K, kind, sgd, learn, P + at, TH + at, TC + at, V + at,
                      AUX ? AUX + at : NULL, kcd, khd, r->f[i], r->A[i], r->E[i], r->B[i],
                      r->w[i], r->h[i], r);
    }
}

SL_CLONES static void sl_own_columns(ptrdiff_t n, ptrdiff_t K, const ptrdiff_t *mode,
                                     double *P, double *TH, double *TC, double *V,
                                     double *AUX, const double *xn, sl_ptr kcd, sl_ptr khd,
                                     const sl_own_rule *r) {
#define SL_COLUMNS(kind, sgd, learn) sl_columns_kind(n, kind, sgd, learn, K, mode, P, TH, TC, \
                                                     V, AUX, xn, kcd, khd, r)
    SL_BY_KIND(r, SL_COLUMNS);
#undef SL_COLUMNS
}

/* Rows of the per-column bounds arrays (4, n): on |TH|, |TC|, |p|, |AUX| of the column. */
enum { SL_M_TH = 0, SL_M_TC = 1, SL_M_P = 2, SL_M_AUX = 3, SL_N_MAXIMA = 4 };

/* Bounds on what the coming in-place update can write, for every learning column, from the
   bounds `mx` before it (the other columns keep theirs): with d <= dmax = max(xmax, |h_i|)
   the largest direct input,
     |TC'| <= f |TC| + |A| |TH| + dmax max |Kc|,     |TH'| <= |B| |TC'| + |E| |TH| + |Kh[o]| dmax,
   then the rule's |AUX'| and |g|, and |p'| <= |p| + alpha |g| (SGD) or + rms_step (RMSProp:
   v >= (1 - beta) g^2 caps a step at alpha / sqrt(1 - beta)). Returns 1 if every bound, and
   |w_i| + head_step, stays below `limit` (NaN compares false: not ok). sl_bounds runs one
   loop per rule and optimiser (constants here), with no branch inside for AVX2 to give up on. */
static inline __attribute__((always_inline)) int sl_bounds_rule(
        ptrdiff_t n, const ptrdiff_t *mode, const sl_own_rule *r, sl_cptr mx, sl_ptr out,
        double xmax, int rule, int sgd, double head_step, double limit) {
    const double *mth = mx + SL_M_TH * n, *mtc = mx + SL_M_TC * n, *mp = mx + SL_M_P * n,
                 *maux = mx + SL_M_AUX * n;
    const double *kci = r->Kc[SL_GATE_I], *kcf = r->Kc[SL_GATE_F], *kcg = r->Kc[SL_GATE_G],
                 *kho = r->Kh[SL_GATE_O], *A = r->A, *E = r->E, *B = r->B, *gf = r->f,
                 *h = r->hprev, *w = r->w;
    double delta = r->delta, alpha = r->alpha, ha = r->ha, gl = r->ge;
    double rms_step = alpha / sqrt(1.0 - r->beta);
    double ad = fabs(delta);
    int bad = 0;
    /* vector loop */
    for (ptrdiff_t i = 0; i < n; i++) {
        double aw = fabs(w[i]), ah = fabs(h[i]);
        double dmax = xmax > ah ? xmax : ah;
        double kc = fabs(kci[i]), kf = fabs(kcf[i]), kg = fabs(kcg[i]);
        kc = kc > kf ? kc : kf;
        kc = kc > kg ? kc : kg;
        double tcb = gf[i] * mtc[i] + fabs(A[i]) * mth[i] + dmax * kc;
        double thb = fabs(B[i]) * tcb + fabs(E[i]) * mth[i] + fabs(kho[i]) * dmax;
        /* meta: |AUX'| <= |AUX| + a |delta| |TH'| + a (|w| |TH'| + |AUX|) */
        double auxb = rule == SL_META ? maux[i] * (1.0 + ha) + ha * (ad + aw) * thb
            : rule == SL_TD ? gl * maux[i] + aw * thb : 0.0;
        double gb = rule == SL_META ? ad * (aw * thb + maux[i])
            : rule == SL_TD ? ad * maux[i] : ad * aw * thb;
        double pb = mp[i] + (sgd ? alpha * gb : rms_step);
        int learning = mode[i] == SL_MODE_LEARNING;
        int fine = (tcb < limit) & (thb < limit) & (gb < limit) & (pb < limit)
            & (auxb < limit) & (aw + head_step < limit);  /* no branches: vectorises */
        bad |= learning & !fine;
        out[SL_M_TH * n + i] = sl_select(learning, thb, mth[i]);
        out[SL_M_TC * n + i] = sl_select(learning, tcb, mtc[i]);
        out[SL_M_P * n + i] = sl_select(learning, pb, mp[i]);
        out[SL_M_AUX * n + i] = sl_select(learning, auxb, maux[i]);
    }
    return !bad;
}

SL_CLONES static int sl_bounds(ptrdiff_t n, const ptrdiff_t *mode, const sl_own_rule *r,
                               sl_cptr mx, sl_ptr out, double xmax, double head_step,
                               double limit) {
#define SL_BOUNDS(rule_, sgd_) sl_bounds_rule(n, mode, r, mx, out, xmax, rule_, sgd_, head_step, \
                                              limit)
    if (r->kind == SL_META)
        return r->sgd ? SL_BOUNDS(SL_META, 1) : SL_BOUNDS(SL_META, 0);
    if (r->kind == SL_TD)
        return r->sgd ? SL_BOUNDS(SL_TD, 1) : SL_BOUNDS(SL_TD, 0);
    return r->sgd ? SL_BOUNDS(SL_RMS, 1) : SL_BOUNDS(SL_RMS, 0);
#undef SL_BOUNDS
}

/* The linear head's step for the columns in use (mode != 0): g = -delta e_i with e_i = h_i
   (regression) or its eligibility (TD), SGD or RMSProp (moments vw). Every column computes
   its step and the columns not in use keep their values (sl_select): a branch around the
   division kept AVX2 code scalar. */
static inline __attribute__((always_inline)) void sl_head_rule(
        ptrdiff_t n, const ptrdiff_t *mode, sl_ptr w, sl_ptr vw, sl_cptr e, double delta,
        double alpha, double beta, double eps, int sgd) {
    /* vector loop */
    for (ptrdiff_t i = 0; i < n; i++) {
        int on = mode[i] != SL_MODE_INACTIVE;
        double g = -delta * e[i], wi = w[i], vi = sgd ? 0.0 : vw[i];
        if (sgd) {
            w[i] = sl_select(on, wi - alpha * g, wi);
        } else {
            sl_rmsprop(&wi, &vi, g, alpha, beta, eps);
            w[i] = sl_select(on, wi, w[i]);
            vw[i] = sl_select(on, vi, vw[i]);
        }
    }
}

SL_CLONES static void sl_head(ptrdiff_t n, const ptrdiff_t *mode, sl_ptr w, sl_ptr vw,
                              sl_cptr e, double delta, double alpha, double beta, double eps,
                              int sgd) {
    if (sgd)
        sl_head_rule(n, mode, w, vw, e, delta, alpha, beta, eps, 1);
    else
        sl_head_rule(n, mode, w, vw, e, delta, alpha, beta, eps, 0);
}

/* The running statistics of the learning columns' states (mode 2; the others keep theirs,
   frozen with their stage): with d = h - mean, mean' = mean + r d and
   var' = (1 - r) (var + r d^2), r = 1 - decay. A C loop with selects: the same loop in
   Cython ran scalar. */
SL_CLONES static void sl_state_stats(ptrdiff_t n, const ptrdiff_t *mode, sl_cptr h, double r,
                                     sl_ptr mean, sl_ptr var) {
    /* vector loop */
    for (ptrdiff_t i = 0; i < n; i++) {
        int on = mode[i] == SL_MODE_LEARNING;
        double d = h[i] - mean[i];
        double m = mean[i] + r * d, v = (1.0 - r) * (var[i] + r * d * d);
        mean[i] = sl_select(on, m, mean[i]);
        var[i] = sl_select(on, v, var[i]);
    }
}

/* ---- activations, vectorisable (the forward step applies them to whole blocks) ---------- */

/* c[0] + c[1] r + ... + c[11] r^11 by Estrin's scheme: pairs, then r^2, r^4 and r^8 combine
   them in a tree of depth 4 instead of Horner's chain of 11 multiply-adds. The activations
   are latency-bound (a column's tanh c' waits for its gates), so the chain is what counts.
   The caller adds the leading terms last, Horner's way: r + r^2 (...) keeps the rounding of
   the larger terms to the last two operations. */
static inline double sl_poly12(double r, const double *c) {
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double q0 = c[0] + c[1] * r, q1 = c[2] + c[3] * r, q2 = c[4] + c[5] * r;
    double q3 = c[6] + c[7] * r, q4 = c[8] + c[9] * r, q5 = c[10] + c[11] * r;
    return ((q0 + q1 * r2) + (q2 + q3 * r2) * r4) + (q4 + q5 * r2) * r8;
}

/* x clamped to [lo, hi]; NaN stays NaN (both comparisons are false). */
static inline double sl_clamp(double x, double lo, double hi) {
    x = sl_select(x < lo, lo, x);
    return sl_select(x > hi, hi, x);
}

/* e^x = 2^k (1 + m) with m = e^r - 1, for x clamped to [-708, 709] (so that 2^k, e^x and
   1 + e^x stay finite; NaN stays NaN): x = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite: k ln2_hi
   is exact), m = r + r^2 (1/2! + r/3! + ... + r^11/13!) (the Taylor remainder is below 1e-17
   relative), 2^k written into the exponent bits (k from the rounding of x / ln2 + 1.5 2^52).
   Returns m and sets *scale = 2^k. */
static inline double sl_exp_reduced(double x, double *scale) {
    static const double taylor[12] = {  /* 1 / j! for j = 2 .. 13 */
        0.5, 0.16666666666666666, 0.041666666666666664, 0.008333333333333333,
        0.001388888888888889, 0.0001984126984126984, 2.48015873015873e-05,
        2.7557319223985893e-06, 2.755731922398589e-07, 2.505210838544172e-08,
        2.08767569878681e-09, 1.6059043836821613e-10};
    const double magic = 6755399441055744.0; /* 1.5 2^52 */
    x = sl_clamp(x, -708.0, 709.0);
    double t = x * 1.4426950408889634 + magic;
    double k = t - magic;
    double r = x - k * 6.93147180369123816490e-01;
    r = r - k * 1.90821492927058770002e-10;
    long long bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4338000000000000LL + 1023) << 52;
    memcpy(scale, &bits, sizeof *scale);
    return r + (r * r) * sl_poly12(r, taylor);
}

/* exp(x) to about 1 ulp (see sl_exp_reduced). */
static inline double sl_exp(double x) {
    double scale, m = sl_exp_reduced(x, &scale);
    return scale * (1.0 + m);
}

/* logistic(x) = 1 / (1 + e^-x): no cancellation at either end. */
static inline double sl_sigmoid(double x) {
    return 1.0 / (1.0 + sl_exp(-x));
}

/* tanh(x) = -u / (2 + u) with u = e^(-2|x|) - 1 = 2^k m + (2^k - 1) in [-1, 0]: 2^k - 1 is
   exact, m keeps its relative accuracy as x -> 0 (no 1 - e^y cancellation, so no separate
   series for small x), and 2 + u is in [1, 2]. Within 3 ulps of libm, with no branch
   between a series and the exponential. */
static inline double sl_tanh(double x) {
    double scale, m = sl_exp_reduced(-2.0 * fabs(x), &scale);
    double u = scale * m + (scale - 1.0);
    return copysign(-u / (2.0 + u), x);
}

/* out[i] = logistic(x[i]); x and out may be the same array (each element is read before it
   is written, at the same index). */
SL_CLONES static void sl_sigmoid_all(ptrdiff_t n, const double *x, double *out) {
    /* vector loop */
    for (ptrdiff_t i = 0; i < n; i++)
        out[i] = sl_sigmoid(x[i]);
}

/* out[i] = tanh(x[i]); in place allowed, as above. */
SL_CLONES static void sl_tanh_all(ptrdiff_t n, const double *x, double *out) {
    /* vector loop */
    for (ptrdiff_t i = 0; i < n; i++)
        out[i] = sl_tanh(x[i]);
}


/* The LSTM cell of columns lo .. hi - 1 from their pre-activations (gate rows of `gates`,
   stride gs, replaced by the activations: logistic i, f, o, tanh g):
   c' = f c + i g, h' = o tanh c'; columns not added yet (mode 0) get c' = h' = 0. Returns 1
   if every |c'| is below `limit` (NaN compares false). Two loops: the gates and c', then
   tanh c' and h'. In one loop a column's tanh c' waits on its gates, a chain of two
   activations longer than the out-of-order window covers. */
SL_CLONES static int sl_cell(ptrdiff_t lo, ptrdiff_t hi, double *gates, ptrdiff_t gs,
                             const ptrdiff_t *mode, const double *c, double *c_new,
                             double *tanh_c, double *h_new, double limit) {
    double *gi = gates, *gf = gates + gs, *go = gates + 2 * gs, *gg = gates + 3 * gs;
    int bad = 0;
    /* vector loop */
#pragma GCC ivdep
    for (ptrdiff_t i = lo; i < hi; i++) {  /* the rows and outputs do not overlap */
        double a = sl_sigmoid(gi[i]), b = sl_sigmoid(gf[i]), o = sl_sigmoid(go[i]);
        double g = sl_tanh(gg[i]);
        gi[i] = a;
        gf[i] = b;
        go[i] = o;
        gg[i] = g;
        c_new[i] = b * c[i] + a * g;
    }
    /* vector loop */
#pragma GCC ivdep
    for (ptrdiff_t i = lo; i < hi; i++) {
        double cn = c_new[i], t = sl_tanh(cn);
        int on = mode[i] != SL_MODE_INACTIVE;
        bad |= on & !(fabs(cn) < limit);
        c_new[i] = sl_select(on, cn, 0.0);
        tanh_c[i] = sl_select(on, t, 0.0);
        h_new[i] = sl_select(on, go[i] * t, 0.0);
    }
    return !bad;
}

#endif
