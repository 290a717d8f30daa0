"""Speed of the compiled kernel and of the River API, side by side with River's own linear
regression, in one run (the current figures are in benchmarks/README.md).

1. Kernel cost per parameter per full learn step (forward, traces, gradient, RMSProp), via
   learn_many so no Python runs per step: in cache (1,024 columns) and out of cache, in
   float64 and with dtype="float32"; and the forward step alone (predict_many) at 1,024
   columns.
2. The memory-traffic bound out of cache: bytes a step must move (read and write every
   parameter, both traces and the RMSProp moment: 64 bytes in float64, 32 in float32) over
   the bandwidth of a single-pass read-modify-write stream (a += b, numpy, one thread)
   measured in the same run.
3. River API, small model (10 columns, 8 features): predict_one + learn_one steps/s against
   River's LinearRegression; learn_many steps/s on the same rows, against the kernel's own
   compiled loop over them (``run_rows``: what learn_many adds is validation and layout).

    python benchmarks/kernel.py [--repeats 5] [--big-columns 1000000]
"""

import argparse
import statistics

import numpy as np

from common import Progress, add_quiet, best_of, machine
from streamlearn import ColumnarRegressor


def spread(values, scale=1.0, fmt="{:.2f}") -> str:
    values = [v * scale for v in values]
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def kernel_ns_per_parameter(n_columns: int, rows: int, repeats: int,
                            dtype: str = "float64") -> list:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(rows, 8)), rng.normal(size=rows)
    names = [f"x{j}" for j in range(8)]
    model = ColumnarRegressor(n_columns=n_columns, seed=0, dtype=dtype)
    model.learn_many(X[:2], y[:2], feature_names=names)
    times = best_of(lambda: model.learn_many(X, y, feature_names=names), repeats)
    return [t / rows / model.n_parameters * 1e9 for t in times]


def forward_ns_per_parameter(n_columns: int, rows: int, repeats: int) -> list:
    """The forward step alone (pre-activations, cell, head; predict_many changes nothing)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(rows, 8)), rng.normal(size=rows)
    names = [f"x{j}" for j in range(8)]
    model = ColumnarRegressor(n_columns=n_columns, seed=0)
    model.learn_many(X[:50], y[:50], feature_names=names)
    times = best_of(lambda: model.predict_many(X, feature_names=names), repeats)
    return [t / rows / model.n_parameters * 1e9 for t in times]


def configurations(repeats: int) -> list:
    """ns per parameter of learn_many for the kernel's other paths: lateral connections,
    stage weights (the last stage of 4 learning, reading 192 frozen columns) and TD."""
    from streamlearn import ColumnarTD

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(2000, 8)), rng.normal(size=2000)
    names = [f"x{j}" for j in range(8)]
    rows = []
    for label, model in (
            ("laterals, density 0.1, 256 columns",
             ColumnarRegressor(n_columns=256, lateral_density=0.1, seed=0)),
            ("stages of 64, 256 columns, last stage learning",
             ColumnarRegressor(n_columns=256, columns_per_stage=64, steps_per_stage=1, seed=0)),
            ("ColumnarTD, 1,024 columns", ColumnarTD(n_columns=1024, seed=0))):
        model.learn_many(X[:5], y[:5], feature_names=names)
        times = best_of(lambda: model.learn_many(X, y, feature_names=names), repeats)
        rows.append((label, [t / len(X) / model.n_parameters * 1e9 for t in times]))
    return rows


def stream_gb_per_second(n: int, repeats: int) -> list:
    """Single-pass read-modify-write stream a += b (numpy, one thread): 24 bytes per element
    (read a and b, write a), the access pattern of a learn step."""
    a, b = np.ones(n), np.ones(n)
    times = best_of(lambda: np.add(a, b, out=a), repeats)
    return [24 * n / t / 1e9 for t in times]


def river_api(repeats: int) -> tuple:
    from river import linear_model

    rng = np.random.default_rng(1)
    rows = [{f"x{j}": float(v) for j, v in enumerate(r)} for r in rng.normal(size=(2000, 8))]
    ys = rng.normal(size=2000).tolist()

    def loop(model):
        def run():
            for x, y in zip(rows, ys):
                model.predict_one(x)
                model.learn_one(x, y)
        return run

    ours = ColumnarRegressor(n_columns=10, seed=0)
    linear = linear_model.LinearRegression()
    loop(ours)()
    loop(linear)()
    ours_rate = [len(rows) / t for t in best_of(loop(ours), repeats)]
    linear_rate = [len(rows) / t for t in best_of(loop(linear), repeats)]
    X = np.array([[x[f"x{j}"] for j in range(8)] for x in rows])
    names = [f"x{j}" for j in range(8)]
    many = ColumnarRegressor(n_columns=10, seed=0)
    many_rate = [len(rows) / t for t in best_of(
        lambda: many.learn_many(X, np.array(ys), feature_names=names), repeats)]
    # the kernel's own cost per step: its compiled loop over the same rows, no validation
    kernel, targets, out = many._net.kernel, np.array(ys), np.empty(len(rows))
    kernel_rate = [len(rows) / t for t in best_of(
        lambda: kernel.run_rows(X, targets, True, out), repeats)]
    return ours_rate, linear_rate, many_rate, kernel_rate, many.n_parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--big-columns", type=int, default=1_000_000)
    add_quiet(parser)
    args = parser.parse_args()
    print(f"# machine: {machine()}; min/median/max of {args.repeats} runs")
    bar = Progress(9, "measurement", args.quiet)
    bandwidth = None
    for dtype, size in (("float64", 8), ("float32", 4)):
        for n_columns, rows in ((1024, 2000), (16384, 200), (args.big_columns, 3)):
            ns = kernel_ns_per_parameter(n_columns, rows, args.repeats, dtype)
            print(f"kernel {dtype}, {n_columns:>9} columns ({n_columns * 40:>10} parameters): "
                  f"{spread(ns)} ns per parameter per learn step")
            if n_columns == args.big_columns:
                bandwidth = bandwidth or stream_gb_per_second(50_000_000, args.repeats)
                bound = 8 * size / max(bandwidth)
                print(f"stream a += b: {spread(bandwidth, fmt='{:.1f}')} GB/s -> memory-traffic "
                      f"bound {bound:.2f} ns per parameter ({8 * size} bytes: read and write P, "
                      f"TH, TC, V); kernel at {min(ns) / bound:.2f}x")
            bar.update()
    print(f"forward step alone (predict_many), float64, 1024 columns: "
          f"{spread(forward_ns_per_parameter(1024, 2000, args.repeats))} ns per parameter")
    bar.update()
    for label, ns in configurations(args.repeats):
        print(f"kernel, {label}: {spread(ns)} ns per parameter per learn step")
    bar.update()
    ours, linear, many, kernel, n_params = river_api(args.repeats)
    bar.update()
    bar.close()
    print(f"River API, 10 columns x 8 features ({n_params} parameters): predict_one + "
          f"learn_one {spread(ours, fmt='{:,.0f}')} steps/s; River LinearRegression "
          f"{spread(linear, fmt='{:,.0f}')} steps/s; ratio {statistics.median(ours) / statistics.median(linear):.2f}")
    print(f"learn_many on the same rows: {spread(many, fmt='{:,.0f}')} steps/s "
          f"({statistics.median(many) / statistics.median(ours):.1f}x the predict_one + learn_one "
          f"loop, whose predictions it also returns); the kernel's own loop (run_rows) "
          f"{spread(kernel, fmt='{:,.0f}')} steps/s: "
          f"learn_many takes {statistics.median(kernel) / statistics.median(many):.2f}x its "
          f"time")


if __name__ == "__main__":
    main()
