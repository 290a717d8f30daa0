"""The cost of the kernel's per-parameter update loop alone (traces + exact float64 RMSProp),
with no per-column work around it: a floor under the full learn step.

Compiles a small C driver around the project's own loop (`pyx/_loops.h`, ``sl_block``: a
block of one column's parameters, here the rule's RMSProp kind) with the flags of setup.py,
once with the AVX2/AVX-512 clones (the loader picks the best for this CPU) and once for
baseline x86-64 only, and times one loop over ``--params`` parameters (in cache by default),
repeated. The same loop with SGD (no moment, no square root, no division) shows what RMSProp's exact
square root and division cost: they share the CPU's divider, whose throughput bounds the
RMSProp loop. The divider alone (``g / (sqrt(v) + eps)`` and nothing else, same clones) is
the floor under any exact RMSProp step.

The same driver times the loops of a whole network's step, column-innermost as the kernel
runs them, for ``--params / 40`` columns of 8 features (1,024 by default): the own
parameters' update (``sl_own``, RMSProp, float64 and float32), the pre-activations
(``sl_preact``, both precisions) and the cell (``sl_cell``), each per parameter of the
network (40 per column).

    python benchmarks/update_loop.py [--params 40960] [--repeats 5]   (about 3 minutes: most of
    it GCC building the driver with the clones)
"""

import argparse
import os
import subprocess
import tempfile

from common import Progress, add_quiet, machine

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "_loops.h"

/* RMSProp's square root and division alone */
SL_CLONES static void divider(long n, double *out, const double *g, const double *v) {
    for (long k = 0; k < n; k++)
        out[k] = g[k] / (sqrt(v[k]) + 1e-8);
}

/* count float64 or float32 values, small, starting `slot` KiB past a page boundary: arrays
   at the same offset within a page alias in the low address bits, as rows a multiple of
   1 KiB apart do, and stall each other's loads (network.empty_columns and row_stride place
   them apart in the same way). */
static void *rows(long count, size_t size, double scale, int slot) {
    char *p = (char *)aligned_alloc(4096, (count * size + 8191) / 4096 * 4096) + 1024 * slot;
    for (long k = 0; k < count; k++) {
        double x = scale * ((k * 7919) % 1000) / 1000.0;
        if (size == 4)
            ((float *)p)[k] = (float)x;
        else
            ((double *)p)[k] = x;
    }
    return p;
}

static double ns_since(struct timespec a) {
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
}

/* One step's loop over a network of n / 40 columns, 8 features (K = 10): 'o' own update
   float64, 'O' float32 (RMSProp), 'p' pre-activations float64, 'P' float32, 'c' the cell.
   Returns the nanoseconds of the sweeps alone (not of filling the arrays). */
static double network(char loop, long n, long sweeps) {
    long cols = n / 40, K = 10, size = loop == 'O' || loop == 'P' ? 4 : 8;
    long stride = cols + 64 / size;
    double x[8] = {0.3, -0.2, 0.1, 0.5, -0.4, 0.2, -0.1, 0.6};
    void *P = rows(4 * K * stride, size, 0.1, 0), *TH = rows(4 * K * stride, size, 0.01, 1);
    void *TC = rows(4 * K * stride, size, 0.01, 2), *V = rows(4 * K * stride, size, 1e-4, 3);
    void *fac = rows(SL_N_FAC * stride, size, 0.5, 0);
    double *gates = rows(4 * stride, 8, 1.0, 1), *h = rows(stride, 8, 0.5, 2);
    double *c = rows(stride, 8, 0.5, 3), *cn = rows(stride, 8, 0.0, 0);
    double *t = rows(stride, 8, 0.0, 1);
    ptrdiff_t *mode = malloc(stride * sizeof *mode);
    for (long i = 0; i < stride; i++)
        mode[i] = SL_MODE_LEARNING;
    sl_own_rule r = {.kind = SL_RMS, .learn = 1, .delta = 0.3, .alpha = 1e-4, .beta = 0.999,
                     .eps = 1e-8};
    sl_own_rule_f32 r32 = {.kind = SL_RMS, .learn = 1, .delta = 0.3f, .alpha = 1e-4f,
                           .beta = 0.999f, .eps = 1e-8f};
    SL_POINT(&r, (double *)fac, stride);
    SL_POINT(&r32, (float *)fac, stride);
    sl_flush_subnormals();  /* as the kernel's steps run */
    struct timespec a;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long s = 0; s < sweeps; s++) {
        if (loop == 'o')
            sl_own(0, cols, K, stride, P, TH, TC, V, NULL, x, &r);
        else if (loop == 'O')
            sl_own_f32(0, cols, K, stride, P, TH, TC, V, NULL, x, &r32);
        else if (loop == 'p')
            sl_preact(0, cols, K, stride, P, x, h, gates, stride);
        else if (loop == 'P')
            sl_preact_f32(0, cols, K, stride, P, x, h, gates, stride);
        else
            sl_cell(0, cols, gates, stride, mode, c, cn, t, h, 1e150);
    }
    return ns_since(a);
}

int main(int argc, char **argv) {
    long n = atol(argv[1]), sweeps = atol(argv[2]);
    if (strchr("oOpPc", argv[3][0])) {
        printf("%.4f\n", network(argv[3][0], n, sweeps) / ((double)n * sweeps));
        return 0;
    }
    /* every array written before the timing: calloc's pages are mapped on first write */
    double *p = malloc(n * 8), *th = malloc(n * 8), *tc = malloc(n * 8), *v = malloc(n * 8);
    double *kcd = malloc(n * 8), *khd = malloc(n * 8);
    for (long k = 0; k < n; k++) {
        p[k] = 0.01 * (k % 11);
        th[k] = tc[k] = 0.0;
        v[k] = 1.0;
        kcd[k] = 0.01 * (k % 7);
        khd[k] = 0.02 * (k % 5);
    }
    /* one column's factors: f, A, E, B, head weight w, state h */
    double f = 0.9, A = 0.01, E = 0.1, B = 0.5, w = 1.0, h = 0.0;
    sl_own_rule r = {.f = &f, .A = &A, .E = &E, .B = &B, .w = &w, .h = &h, .learn = 1,
                     .alpha = 0.01, .beta = 0.9999, .eps = 1e-8};
    char rule = argv[3][0];
    r.kind = rule == 's' ? SL_SGD : SL_RMS;
    r.sgd = rule == 's';
    struct timespec a;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long s = 0; s < sweeps; s++) {
        r.delta = 1e-3 * (s % 3 - 1);
        if (rule == 'd')
            divider(n, p, kcd, v);
        else
            sl_block(n, 0, p, th, tc, v, NULL, kcd, khd, &r);
    }
    printf("%.4f\n", ns_since(a) / ((double)n * sweeps));
    return p[n / 2] > 1e300;  /* keep the result alive */
}
"""


def build(variant: str, flags: list, workdir: str) -> str:
    source, binary = os.path.join(workdir, "driver.c"), os.path.join(workdir, variant)
    with open(source, "w") as f:
        f.write(DRIVER)
    subprocess.run(["gcc", "-O3", "-fno-math-errno", "-ffp-contract=off", *flags,
                    "-I", os.path.join(ROOT, "pyx"), source, "-o", binary, "-lm"], check=True)
    return binary


def run(binary: str, rule: str, params: int, repeats: int) -> list:
    sweeps = max(1, 200_000_000 // params)
    return [float(subprocess.run([binary, str(params), str(sweeps), rule], capture_output=True,
                                 text=True).stdout) for _ in range(repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=40_960)
    parser.add_argument("--repeats", type=int, default=5)
    add_quiet(parser)
    args = parser.parse_args()
    print(f"# machine: {machine()}; traces and the optimiser's step over {args.params:,} "
          f"float64 parameters; min/median/max of {args.repeats}")
    with tempfile.TemporaryDirectory() as workdir:
        clones = build("clones", [], workdir)
        baseline = build("baseline", ["-DSTREAMLEARN_NO_CLONES"], workdir)
        bar = Progress(9, "loop", args.quiet)
        for label, binary, rule in (("RMSProp, clones", clones, "rms"),
                                    ("SGD, clones", clones, "sgd"),
                                    ("divider alone, clones", clones, "div"),
                                    ("RMSProp, baseline", baseline, "rms"),
                                    ("own, float64, clones", clones, "o"),
                                    ("own, float32, clones", clones, "O"),
                                    ("preact, float64, clones", clones, "p"),
                                    ("preact, float32, clones", clones, "P"),
                                    ("cell, clones", clones, "c")):
            ns = sorted(run(binary, rule, args.params, args.repeats))
            print(f"{label:>22}: {ns[0]:.3f}/{ns[len(ns) // 2]:.3f}/{ns[-1]:.3f} ns per "
                  f"parameter")
            bar.update()
        bar.close()


if __name__ == "__main__":
    main()
