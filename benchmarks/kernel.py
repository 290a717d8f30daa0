"""Speed of the compiled kernel and of the River API, side by side with River's own linear
regression, in one run (issue 6's measurements; targets in benchmarks/README.md).

1. Kernel cost per parameter per full learn step (forward, traces, gradient, RMSProp), via
   learn_many so no Python runs per step: in cache (1,024 columns) and out of cache.
2. The memory-traffic bound out of cache: bytes a step must move (read and write every
   parameter, both traces and the RMSProp moment: 64 bytes in float64) over a triad
   bandwidth (a = b + s c, numpy, one thread) measured in the same run.
3. The floor an exact float64 RMSProp step sets: its sqrt and division alone.
4. River API, small model (10 columns, 8 features): predict_one + learn_one steps/s against
   River's LinearRegression; learn_many steps/s on the same rows.

    python benchmarks/kernel.py [--repeats 5] [--big-columns 1000000]
"""

import argparse
import statistics

import numpy as np

from common import best_of, machine
from streamlearn import ColumnarRegressor


def spread(values, scale=1.0, fmt="{:.2f}") -> str:
    values = [v * scale for v in values]
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def kernel_ns_per_parameter(n_columns: int, rows: int, repeats: int) -> list:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(rows, 8)), rng.normal(size=rows)
    names = [f"x{j}" for j in range(8)]
    model = ColumnarRegressor(n_columns=n_columns, seed=0)
    model.learn_many(X[:2], y[:2], feature_names=names)
    times = best_of(lambda: model.learn_many(X, y, feature_names=names), repeats)
    return [t / rows / model.n_parameters * 1e9 for t in times]


def triad_gb_per_second(n: int, repeats: int) -> list:
    b, c, a = np.ones(n), np.ones(n), np.empty(n)
    times = best_of(lambda: (np.multiply(c, 1.5, out=a), np.add(a, b, out=a)), repeats)
    # multiply: read c, write a; add: read a and b, write a -> 5 passes of 8 bytes
    return [5 * 8 * n / t / 1e9 for t in times]


def rmsprop_divider_ns(n: int, repeats: int) -> list:
    """ns per element of the two divider operations an exact float64 RMSProp step needs,
    sqrt(v) and g / (sqrt(v) + eps), alone, in cache, with numpy's runtime-dispatched SIMD
    loops (AVX2/AVX-512 where the CPU has them): a floor under any exact float64 learn step."""
    rng = np.random.default_rng(2)
    v, g, s = rng.uniform(0.5, 2.0, n), rng.normal(size=n), np.empty(n)

    def run():
        for _ in range(100):
            np.sqrt(v, out=s)
            np.add(s, 1e-8, out=s)
            np.divide(g, s, out=s)
    return [t / (100 * n) * 1e9 for t in best_of(run, repeats)]


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
    return ours_rate, linear_rate, many_rate, many.n_parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--big-columns", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"# machine: {machine()}; float64; min/median/max of {args.repeats} runs")
    for n_columns, rows in ((1024, 2000), (16384, 200), (args.big_columns, 3)):
        ns = kernel_ns_per_parameter(n_columns, rows, args.repeats)
        print(f"kernel, {n_columns:>9} columns ({n_columns * 40:>10} parameters): "
              f"{spread(ns)} ns per parameter per learn step")
        if n_columns == args.big_columns:
            bandwidth = triad_gb_per_second(20_000_000, args.repeats)
            bound = 64 / max(bandwidth)
            print(f"triad bandwidth {spread(bandwidth, fmt='{:.1f}')} GB/s -> memory-traffic bound "
                  f"{bound:.2f} ns per parameter (64 bytes); kernel at {min(ns) / bound:.2f}x")
    floor = rmsprop_divider_ns(40_960, args.repeats)
    print(f"RMSProp's sqrt and division alone (numpy SIMD, 40,960 float64 in cache): "
          f"{spread(floor)} ns per parameter")
    ours, linear, many, n_params = river_api(args.repeats)
    print(f"River API, 10 columns x 8 features ({n_params} parameters): predict_one + "
          f"learn_one {spread(ours, fmt='{:,.0f}')} steps/s; River LinearRegression "
          f"{spread(linear, fmt='{:,.0f}')} steps/s; ratio {statistics.median(ours) / statistics.median(linear):.2f}")
    print(f"learn_many on the same rows: {spread(many, fmt='{:,.0f}')} steps/s "
          f"({statistics.median(many) / statistics.median(ours):.1f}x the learn_one loop)")


if __name__ == "__main__":
    main()
