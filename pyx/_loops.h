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

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(STREAMLEARN_NO_CLONES)
#define SL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SL_CLONES
#endif

typedef double *__restrict__ sl_ptr;
typedef const double *__restrict__ sl_cptr;

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

#endif
