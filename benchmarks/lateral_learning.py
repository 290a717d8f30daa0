"""Learning with lateral connections at matched compute: does the approximate gradient of a
denser network pay for itself?

Three networks with about the same number of recurrent parameters (so the same cost per
step), all trained with the columnar estimate (default ColumnarRegressor otherwise): 40
columns without lateral connections, 25 columns at density 0.1, 11 fully connected columns.
Tasks that need memory: StepsSinceEvent (count steps since a random event) and
MovingAverage(beta=0.99). Prints the progressive MAE over time, mean over seeds.

    python benchmarks/lateral_learning.py [--steps 50000] [--seeds 3] [--plot FILE.png]
"""

import argparse
import time

import numpy as np
from river import metrics

from common import Progress, add_quiet, machine
from streamlearn import ColumnarRegressor
from streamlearn.datasets import MovingAverage, StepsSinceEvent

CONFIGS = {"40 columns, density 0": (40, 0.0), "25 columns, density 0.1": (25, 0.1),
           "11 columns, density 1": (11, 1.0)}
TASKS = {"steps since event": lambda n, seed: StepsSinceEvent(n=n, cap=30, seed=seed),
         "moving average 0.99": lambda n, seed: MovingAverage(n=n, beta=0.99, seed=seed)}


def curve(config: tuple, task, steps: int, seed: int, every: int) -> tuple:
    n_columns, density = config
    model = ColumnarRegressor(n_columns=n_columns, lateral_density=density, seed=seed)
    mae, points, busy = metrics.MAE(), [], 0.0
    for t, (x, y) in enumerate(task(steps, seed), start=1):
        start = time.perf_counter()
        y_pred = model.predict_one(x)
        model.learn_one(x, y)
        busy += time.perf_counter() - start
        mae.update(y, y_pred)
        if t % every == 0:
            points.append(mae.get())
    return model.n_parameters, points, busy / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--plot")
    add_quiet(parser)
    args = parser.parse_args()
    print(f"# machine: {machine()}; {args.seeds} seeds; progressive MAE (mean over seeds)")
    results = {}
    bar = Progress(len(TASKS) * len(CONFIGS) * args.seeds * args.steps, "step", args.quiet)
    for task_name, task in TASKS.items():
        print(f"\n## {task_name}")
        print(f"{'network':>26} {'params':>7} {'us/step':>8} " + " ".join(
            f"{(i + 1) * args.every:>9}" for i in range(args.steps // args.every)))
        for name, config in CONFIGS.items():
            runs = []
            for seed in range(args.seeds):
                runs.append(curve(config, task, args.steps, seed, args.every))
                bar.update(args.steps)
            mean = np.mean([points for _, points, _ in runs], axis=0)
            per_step = np.mean([cost for _, _, cost in runs]) * 1e6
            results[(task_name, name)] = mean
            print(f"{name:>26} {runs[0][0]:>7} {per_step:>8.1f} "
                  + " ".join(f"{v:>9.4f}" for v in mean))
    bar.close()
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(TASKS), figsize=(11, 4))
        xs = np.arange(1, args.steps // args.every + 1) * args.every
        for ax, task_name in zip(axes, TASKS):
            for name in CONFIGS:
                ax.plot(xs, results[(task_name, name)], marker="o", label=name)
            ax.set_title(task_name)
            ax.set_xlabel("steps")
            ax.set_ylabel("progressive MAE")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
