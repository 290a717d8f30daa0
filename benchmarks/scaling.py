"""Time per learn_one step against network size: per-column RTRL is O(n).

Prints, for n_columns from 16 to 16,384 (8 features, so 40 recurrent parameters per column),
the time of one predict_one + learn_one step through the River API and the nanoseconds per
parameter, then the least-squares slope of log(time) against log(parameters).

    python benchmarks/scaling.py [--min-seconds 0.5] [--repeats 3]
"""

import argparse
import statistics

import numpy as np

from common import Progress, add_quiet, best_of, machine
from streamlearn import ColumnarRegressor


def measure(n_columns: int, min_seconds: float, repeats: int) -> tuple:
    rng = np.random.default_rng(0)
    xs = [{f"x{j}": float(v) for j, v in enumerate(row)} for row in rng.normal(size=(256, 8))]
    ys = rng.normal(size=256).tolist()
    model = ColumnarRegressor(n_columns=n_columns, seed=0)
    for x, y in zip(xs, ys):  # warm up, register the features
        model.predict_one(x)
        model.learn_one(x, y)
    steps = 256
    while True:
        def run():
            for t in range(steps):
                x, y = xs[t % 256], ys[t % 256]
                model.predict_one(x)
                model.learn_one(x, y)
        (elapsed,) = best_of(run, 1)
        if elapsed >= min_seconds / repeats or steps >= 1 << 22:
            break
        steps *= 2
    per_step = [t / steps for t in best_of(run, repeats)]
    return model.n_parameters, per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    add_quiet(parser)
    args = parser.parse_args()
    print(f"# machine: {machine()}")
    print(f"{'columns':>8} {'parameters':>11} {'us/step (min/med/max)':>28} {'ns/param':>9}")
    sizes, times = [], []
    columns = (16, 64, 256, 1024, 4096, 16384)
    bar = Progress(len(columns), "size", args.quiet)
    for n_columns in columns:
        n_params, per_step = measure(n_columns, args.min_seconds, args.repeats)
        best = min(per_step)
        sizes.append(n_params)
        times.append(best)
        spread = "/".join(f"{t * 1e6:.2f}" for t in (min(per_step), statistics.median(per_step),
                                                      max(per_step)))
        print(f"{n_columns:>8} {n_params:>11} {spread:>28} {best / n_params * 1e9:>9.2f}")
        bar.update()
    bar.close()
    logs, logt = np.log(sizes), np.log(times)
    slope = np.polyfit(logs, logt, 1)[0]
    slope_large = np.polyfit(logs[2:], logt[2:], 1)[0]
    print(f"log-log slope, all sizes: {slope:.3f}; from 256 columns up: {slope_large:.3f}")


if __name__ == "__main__":
    main()
