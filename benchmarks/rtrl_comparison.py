"""Time per step against the number of parameters: columnar RTRL (O(n)) beside full RTRL on
a dense LSTM (O(n^4) in units, O(n^2) in parameters) and truncated BPTT (O(k n)), with the
log-log slope of the columnar kernel between about 4,000 and 4,000,000 parameters.

    python benchmarks/rtrl_comparison.py [--plot FILE.png]
"""

import argparse
import time

import numpy as np

from common import Progress, add_quiet, machine
from streamlearn import ColumnarRegressor
from streamlearn.baselines import FullRTRL, TruncatedBPTTTD

FEATURES = [f"x{j}" for j in range(8)]


def seconds_per_step(step, min_seconds: float = 0.5) -> float:
    """Median-free: the best of three timed batches, each at least min_seconds / 3 long."""
    n, best = 1, float("inf")
    while True:
        start = time.perf_counter()
        for _ in range(n):
            step()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds / 3:
            best = min(best, elapsed / n)
            break
        n *= 2
    for _ in range(2):
        start = time.perf_counter()
        for _ in range(n):
            step()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def columnar(n_columns: int) -> tuple:
    rng = np.random.default_rng(0)
    rows = max(1, 200_000 // n_columns)
    X, y = rng.normal(size=(rows, 8)), rng.normal(size=rows)
    model = ColumnarRegressor(n_columns=n_columns, seed=0)
    model.learn_many(X[:1], y[:1], feature_names=FEATURES)
    t = seconds_per_step(lambda: model.learn_many(X, y, feature_names=FEATURES)) / rows
    return model.n_parameters, t


def full_rtrl(hidden: int) -> tuple:
    net = FullRTRL(8, hidden)
    x = np.random.default_rng(0).normal(size=8)
    return net.n_parameters, seconds_per_step(lambda: net.step(x))


def tbptt(hidden: int, k: int = 8) -> tuple:
    net = TruncatedBPTTTD(FEATURES, hidden=hidden, truncation=k)
    x = {name: 0.5 for name in FEATURES}
    return net._arrays["W"].size, seconds_per_step(lambda: net.learn_one(x, 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot")
    add_quiet(parser)
    args = parser.parse_args()
    print(f"# machine: {machine()}; float64, 8 inputs; seconds per learn step (best of 3)")
    jobs = {"columnar RTRL (this kernel)": (columnar, (100, 1_000, 10_000, 100_000)),
            "full RTRL, dense LSTM (numpy)": (full_rtrl, (4, 8, 16, 32, 48)),
            "truncated BPTT k=8, dense LSTM (Cython)": (tbptt, (8, 16, 32, 64, 128))}
    bar = Progress(sum(len(sizes) for _, sizes in jobs.values()), "size", args.quiet)
    curves = {}
    for name, (measure, sizes) in jobs.items():
        for size in sizes:
            curves.setdefault(name, []).append(measure(size))
            bar.update()
    bar.close()
    for name, points in curves.items():
        print(f"\n{name}")
        for n, t in points:
            print(f"  {n:>10} parameters: {t * 1e6:>12.2f} us/step ({t / n * 1e9:.2f} ns/parameter)")
        slope = np.polyfit(np.log([n for n, _ in points]), np.log([t for _, t in points]), 1)[0]
        print(f"  log-log slope: {slope:.3f}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, points in curves.items():
            ax.plot([n for n, _ in points], [t for _, t in points], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("seconds per step")
        ax.legend(fontsize=8)
        ax.set_title("Cost per step against network size")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
