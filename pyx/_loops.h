/* Per-parameter update loops of the columnar kernel (pyx/_columnar.pyx).

   Each loop runs over `n` consecutive parameters of one column that share the factors of the
   trace recursion (PAPER.md section 3):
       TC' = f TC + A TH + kcd,    TH' = B TC' + E TH + khd,
   where kcd[k] and khd[k] are the parameter's direct-input terms (Kc[gate] d, Kh[gate] d),
   and then takes the learning rule's step. They are in C so that GCC can build each one for
   several instruction sets and pick the best at load time (target_clones: AVX-512, AVX2,
   baseline x86-64). The module is compiled with -ffp-contract=off: no fused multiply-add,
   so every clone rounds exactly as the baseline does and results are bit-identical across
   machines (each parameter's arithmetic is independent; no reductions). The formulas are
   repeated in each loop on purpose: one branch-free loop per case vectorises. */
#ifndef STREAMLEARN_LOOPS_H
#define STREAMLEARN_LOOPS_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(STREAMLEARN_NO_CLONES)
#define SL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SL_CLONES
#endif

typedef double *__restrict__ sl_ptr;
typedef const double *__restrict__ sl_cptr;

/* Direct-input terms of a block of parameters: entry e has gate z(e) and input d[j(e)];
   kcd[e] = Kc[z] d[j], khd[e] = Kh[z] d[j]. Own parameters are gate-major (e = z K + j,
   `gate_major`), lateral and stage weights input-major (e = 4 j + z). */
SL_CLONES static void sl_direct(ptrdiff_t count, sl_cptr d, const double *Kc, const double *Kh,
                                sl_ptr kcd, sl_ptr khd, int gate_major) {
    if (gate_major) {
        for (int z = 0; z < 4; z++) {
            double kc = Kc[z], kh = Kh[z];
            for (ptrdiff_t j = 0; j < count; j++) {
                kcd[z * count + j] = kc * d[j];
                khd[z * count + j] = kh * d[j];
            }
        }
    } else {
        for (ptrdiff_t j = 0; j < count; j++) {
            for (int z = 0; z < 4; z++) {
                kcd[4 * j + z] = Kc[z] * d[j];
                khd[4 * j + z] = Kh[z] * d[j];
            }
        }
    }
}

/* Traces only (a step without learning). */
SL_CLONES static void sl_traces(ptrdiff_t n, sl_ptr th, sl_ptr tc, sl_cptr kcd, sl_cptr khd,
                                double f, double A, double E, double B) {
    for (ptrdiff_t k = 0; k < n; k++) {
        double a = th[k];
        double c = f * tc[k] + A * a + kcd[k];
        tc[k] = c;
        th[k] = B * c + E * a + khd[k];
    }
}

/* Traces, then p += scale TH' (scale = alpha delta w_i). */
SL_CLONES static void sl_regression_sgd(ptrdiff_t n, sl_ptr p, sl_ptr th, sl_ptr tc,
                                        sl_cptr kcd, sl_cptr khd, double f, double A,
                                        double E, double B, double scale) {
    for (ptrdiff_t k = 0; k < n; k++) {
        double a = th[k];
        double c = f * tc[k] + A * a + kcd[k];
        a = B * c + E * a + khd[k];
        tc[k] = c;
        th[k] = a;
        p[k] += scale * a;
    }
}

/* Traces, then the RMSProp step on g = dw TH' (dw = -delta w_i). */
SL_CLONES static void sl_regression_rms(ptrdiff_t n, sl_ptr p, sl_ptr th, sl_ptr tc, sl_ptr v,
                                        sl_cptr kcd, sl_cptr khd, double f, double A,
                                        double E, double B, double dw, double alpha,
                                        double beta, double eps) {
    for (ptrdiff_t k = 0; k < n; k++) {
        double a = th[k];
        double c = f * tc[k] + A * a + kcd[k];
        a = B * c + E * a + khd[k];
        tc[k] = c;
        th[k] = a;
        double g = dw * a;
        double vv = beta * v[k] + (1.0 - beta) * g * g;
        v[k] = vv;
        p[k] -= alpha * g / (sqrt(vv) + eps);
    }
}

/* TD(lambda): traces; the step on g = -delta e (SGD, or RMSProp if `learn`); then the
   eligibility e' = ge e + w TH' (ge = gamma lambda). */
SL_CLONES static void sl_td(ptrdiff_t n, sl_ptr p, sl_ptr th, sl_ptr tc, sl_ptr v, sl_ptr e,
                            sl_cptr kcd, sl_cptr khd, double f, double A, double E, double B,
                            double delta, double w, double ge, double alpha, double beta,
                            double eps, int sgd, int learn) {
    for (ptrdiff_t k = 0; k < n; k++) {
        double a = th[k];
        double c = f * tc[k] + A * a + kcd[k];
        a = B * c + E * a + khd[k];
        tc[k] = c;
        th[k] = a;
        double t = e[k];
        double g = -delta * t;
        if (sgd) {
            p[k] -= alpha * g;
        } else if (learn) {
            double vv = beta * v[k] + (1.0 - beta) * g * g;
            v[k] = vv;
            p[k] -= alpha * g / (sqrt(vv) + eps);
        }
        e[k] = ge * t + w * a;
    }
}

/* Meta-gradients: traces; if `learn`, the step on g = -delta (w TH' + h AUX) and the
   LMS-trace update AUX' = AUX + ha delta TH' - ha h (w TH' + h AUX). */
SL_CLONES static void sl_meta(ptrdiff_t n, sl_ptr p, sl_ptr th, sl_ptr tc, sl_ptr v, sl_ptr tw,
                              sl_cptr kcd, sl_cptr khd, double f, double A, double E, double B,
                              double delta, double w, double h, double ha, double alpha,
                              double beta, double eps, int sgd, int learn) {
    for (ptrdiff_t k = 0; k < n; k++) {
        double a = th[k];
        double c = f * tc[k] + A * a + kcd[k];
        a = B * c + E * a + khd[k];
        tc[k] = c;
        th[k] = a;
        if (learn) {
            double t = tw[k];
            double y = w * a + h * t;
            double g = -delta * y;
            tw[k] = t + ha * (delta * a - h * y);
            if (sgd) {
                p[k] -= alpha * g;
            } else {
                double vv = beta * v[k] + (1.0 - beta) * g * g;
                v[k] = vv;
                p[k] -= alpha * g / (sqrt(vv) + eps);
            }
        }
    }
}

/* ---- activations, vectorisable (the forward step applies them to whole blocks) ---------- */

/* exp(x) to about 1 ulp, x clamped to [-708, 709] (so the result and 1 + it stay finite; NaN
   stays NaN): x = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite: k ln2_hi is exact), e^r by its
   Taylor polynomial of degree 13 (remainder below 1e-17 relative), times 2^k written into the
   exponent bits (k from the rounding of x / ln2 + 1.5 2^52). */
static inline double sl_exp(double x) {
    const double magic = 6755399441055744.0; /* 1.5 2^52 */
    x = x < -708.0 ? -708.0 : x;
    x = x > 709.0 ? 709.0 : x;
    double t = x * 1.4426950408889634 + magic;
    double k = t - magic;
    double r = x - k * 6.93147180369123816490e-01;
    r = r - k * 1.90821492927058770002e-10;
    double p = 1.0 + r * (1.0 + r * (0.5 + r * (0.16666666666666666 + r * (
        0.041666666666666664 + r * (0.008333333333333333 + r * (0.001388888888888889 + r * (
        0.0001984126984126984 + r * (2.48015873015873e-05 + r * (2.7557319223985893e-06 + r * (
        2.755731922398589e-07 + r * (2.505210838544172e-08 + r * (2.08767569878681e-09 + r * (
        1.6059043836821613e-10)))))))))))));
    long long bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4338000000000000LL + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* logistic(x) = 1 / (1 + e^-x): no cancellation at either end. */
static inline double sl_sigmoid(double x) {
    return 1.0 / (1.0 + sl_exp(-x));
}

/* tanh(x): for |x| < 0.25 its odd Taylor series to x^25 (remainder below 1e-19 relative);
   beyond, (1 - e) / (1 + e) with e = exp(-2|x|) (1 - e >= 0.39: no cancellation). */
static inline double sl_tanh(double x) {
    double ax = fabs(x), x2 = x * x;
    double e = sl_exp(-2.0 * ax);
    double big = (1.0 - e) / (1.0 + e);
    double small = ax * (1.0 + x2 * (-0.3333333333333333 + x2 * (0.13333333333333333 + x2 * (
        -0.05396825396825397 + x2 * (0.021869488536155203 + x2 * (-0.008863235529902197 + x2 * (
        0.003592128036572481 + x2 * (-0.0014558343870513183 + x2 * (0.000590027440945586 + x2 * (
        -0.00023912911424355248 + x2 * (9.691537956929451e-05 + x2 * (-3.927832388331683e-05 +
        x2 * 1.5918905069328964e-05))))))))))));
    return copysign(ax < 0.25 ? small : big, x);
}

/* out[i] = logistic(x[i]); x and out may be the same array (each element is read before it
   is written, at the same index). */
SL_CLONES static void sl_sigmoid_all(ptrdiff_t n, const double *x, double *out) {
    for (ptrdiff_t i = 0; i < n; i++)
        out[i] = sl_sigmoid(x[i]);
}

/* out[i] = tanh(x[i]); in place allowed, as above. */
SL_CLONES static void sl_tanh_all(ptrdiff_t n, const double *x, double *out) {
    for (ptrdiff_t i = 0; i < n; i++)
        out[i] = sl_tanh(x[i]);
}

#endif
