"""Kinds of memory a stream can ask for, and how much of each the learners learn, against
references (the current table is in benchmarks/README.md).

Every task is a regression on a stream of inputs u_t, v_t ~ N(0, 1) (the counter's events
are Bernoulli(0.1)), learned online; the score is the MAE over the last 5,000 of n events,
with events/s of the whole run (plot: memory.png):

- delayed recall, y_t = u_{t-k} for k = 1, 2, 3, 5, 8;
- fading memory, y_t = EMA(10) of u (alpha = 2 / 11), and the mean of the last 10 u;
- a product of two inputs at different lags, y_t = u_{t-1} v_{t-3};
- a sparse event counter, y_t = the number of events among the last 20 steps.

References: the mean predictor (River's ``stats.Mean`` of y), and River's
``LinearRegression`` behind a ``StandardScaler`` given lags 0..20 of every input by hand
(the ceiling of a linear model with the lags given; the product is not linear in them). The
learners see only the current u_t (and v_t): recall must come from their recurrent state.

    python benchmarks/memory.py [--events 100000] [--seeds 3]
"""

import argparse
import os
import statistics
import time

import numpy as np

from common import Progress, add_quiet, machine

LAGS = 20        # the lags the linear reference is given (the counter needs 20)
SCORED = 5_000   # the last events scored


def tasks(n: int, rng) -> dict:
    """name -> (inputs (n, d) with names, targets (n,))."""
    u, v = rng.normal(size=n), rng.normal(size=n)
    out = {}
    for k in (1, 2, 3, 5, 8):
        out[f"recall k={k}"] = (["u"], u[:, None], np.concatenate([np.zeros(k), u[:-k]]))
    ema, level = np.empty(n), 0.0
    for t in range(n):
        level += 2 / 11 * (u[t] - level)
        ema[t] = level
    out["EMA(10)"] = (["u"], u[:, None], ema)
    window = np.convolve(u, np.ones(10) / 10)[:n]
    out["mean of last 10"] = (["u"], u[:, None], window)
    product = np.zeros(n)
    product[3:] = u[2:-1] * v[:-3]
    out["u(t-1) v(t-3)"] = (["u", "v"], np.stack([u, v], axis=1), product)
    events = (rng.random(n) < 0.1).astype(float)
    out["events in last 20"] = (["e"], events[:, None], np.convolve(events, np.ones(20))[:n])
    return out


def lagged(names: list, X: np.ndarray) -> tuple:
    """Lags 0..LAGS of every column of X, as the linear reference is given them."""
    columns, labels = [], []
    for j, name in enumerate(names):
        for lag in range(LAGS + 1):
            columns.append(np.concatenate([np.zeros(lag), X[:len(X) - lag, j]]))
            labels.append(f"{name}_lag{lag}")
    return labels, np.stack(columns, axis=1)


def score(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(pred[-SCORED:] - y[-SCORED:])))


def run_mean(names, X, y, seed):
    from river import stats

    mean, pred = stats.Mean(), np.empty(len(y))
    for t, target in enumerate(y):
        pred[t] = mean.get()
        mean.update(target)
    return pred


def run_linear(names, X, y, seed):
    from river import linear_model, preprocessing

    labels, L = lagged(names, X)
    model = preprocessing.StandardScaler() | linear_model.LinearRegression()
    pred = np.empty(len(y))
    for t, (row, target) in enumerate(zip(L, y)):
        x = dict(zip(labels, row.tolist()))
        pred[t] = model.predict_one(x)
        model.learn_one(x, float(target))
    return pred


def columnar(**params):
    def run(names, X, y, seed):
        from streamlearn import ColumnarRegressor

        return ColumnarRegressor(seed=seed, **params).learn_many(X, y, feature_names=names)
    return run


MODELS = {
    "mean predictor": (run_mean, False),
    f"LinearRegression, lags 0-{LAGS} given": (run_linear, False),
    "ColumnarRegressor()": (columnar(), True),
    "step_size=0.01": (columnar(step_size=0.01), True),
    "stages of 10, lag 1": (columnar(n_columns=100, columns_per_stage=10, steps_per_stage=5000,
                                     stage_lag=1, step_size=0.01), True),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=3)
    add_quiet(parser)
    args = parser.parse_args()
    print(f"# machine: {machine()}; n = {args.events:,}, MAE over the last {SCORED:,}, "
          f"mean over seeds 0-{args.seeds - 1} (events/s: median)")
    results = {}
    runs = len(tasks(1_000, np.random.default_rng(0))) * sum(
        args.seeds if seeded else 1 for _, seeded in MODELS.values())
    bar = Progress(runs * args.events, "event", args.quiet)
    for seed in range(args.seeds):
        for task, (names, X, y) in tasks(args.events, np.random.default_rng(seed)).items():
            for label, (run, seeded) in MODELS.items():
                if not seeded and seed:
                    continue
                start = time.perf_counter()
                pred = run(names, X, y, seed)
                elapsed = time.perf_counter() - start
                results.setdefault((task, label), []).append(
                    (score(y, pred), len(y) / elapsed))
                bar.update(len(y))
    bar.close()
    labels = list(MODELS)
    print("\n| task | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for task in tasks(1_000, np.random.default_rng(0)):
        cells = [f"{statistics.mean(m for m, _ in results[(task, label)]):.3f}"
                 for label in labels]
        print(f"| {task} | " + " | ".join(cells) + " |")
    speeds = [statistics.median(speed for (_, name), runs in results.items() if name == label
                                for _, speed in runs) for label in labels]
    print("| events/s | " + " | ".join(f"{speed:,.0f}" for speed in speeds) + " |")
    _plot(results, labels, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "memory.png"))


def _plot(results: dict, labels: list, path: str) -> None:
    """Grouped bars: each task's MAE per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(task for task, _ in results))
    fig, ax = plt.subplots(figsize=(13, 5))
    width = 0.8 / len(labels)
    for j, label in enumerate(labels):
        ax.bar(np.arange(len(names)) + j * width,
               [statistics.mean(m for m, _ in results[(task, label)]) for task in names],
               width, label=label)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, fontsize=8)
    ax.set_ylabel(f"MAE over the last {SCORED:,} events")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
