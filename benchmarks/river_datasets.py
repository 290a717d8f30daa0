"""The learners on every dataset that ships with River, against the models a River user would
pick instead, as a River user runs them: metric, events/s and peak memory per dataset and
model (the current table is in benchmarks/README.md; the plot is river_datasets.png).

- Regression (TrumpApproval, ChickWeights, SP500Stocks): progressive validation, MAE.
- Classification (Phishing, Bananas, ImageSegments): progressive validation, accuracy.
- Forecasting (AirlinePassengers, WaterFlow): one-step forecasts, each made before its
  value arrives, MAE from step m on (m the season, 12 and 24: the first step HoltWinters
  can forecast). River's evaluate.evaluate scores its horizon step h against the value
  h + 1 steps after the last one learned, so it is not used here.

Models with a seed run seeds 0-4 (mean +- sd); deterministic ones run once. deep-river's
LSTM runs in its own venv (River 0.25, torch CPU) through deep_river_worker.py when
--deep-river-python points at that venv's python (recipe in benchmarks/README.md).

Each run is a fresh process, so that its peak memory can be read: the peak resident set
size while it streams, less the size before the first event. events/s counts the
predict + learn loop only.

    python benchmarks/river_datasets.py [--seeds 5] [--deep-river-python /path/to/python]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from common import Progress, add_quiet, machine

HERE = os.path.dirname(os.path.abspath(__file__))

DATASETS = (("TrumpApproval", "regression"), ("ChickWeights", "regression"),
            ("SP500Stocks", "regression"), ("AirlinePassengers", "forecasting"),
            ("WaterFlow", "forecasting"), ("Phishing", "classification"),
            ("Bananas", "classification"), ("ImageSegments", "classification"))
SEASON = {"AirlinePassengers": 12, "WaterFlow": 24}
METRIC = {"regression": "MAE", "forecasting": "MAE (one step)", "classification": "accuracy"}
OURS = {"regression": "ColumnarRegressor", "forecasting": "ColumnarForecaster",
        "classification": "ColumnarClassifier"}
DEEP_RIVER = "deep-river LSTM"


def models(task: str, dataset: str, multiclass: bool) -> dict:
    """label -> (factory(seed), seeded) for one task."""
    from river import forest, linear_model, multiclass as mc, neighbors, optim, preprocessing, \
        time_series, tree

    from streamlearn import ColumnarClassifier, ColumnarForecaster, ColumnarRegressor

    def scaled(model):
        return lambda seed: preprocessing.StandardScaler() | model()

    if task == "regression":
        return {
            "ColumnarRegressor": (lambda seed: ColumnarRegressor(seed=seed), True),
            "LinearRegression (scaled)": (scaled(linear_model.LinearRegression), False),
            "KNNRegressor (scaled)": (scaled(neighbors.KNNRegressor), False),
            # the trees' leaves hold linear models: scaled, as River's examples run them
            "HoeffdingAdaptiveTree (scaled)": (lambda seed: preprocessing.StandardScaler()
                                               | tree.HoeffdingAdaptiveTreeRegressor(seed=seed),
                                               True),
            "ARF (3 trees, scaled)": (lambda seed: preprocessing.StandardScaler()
                                      | forest.ARFRegressor(n_models=3, seed=seed), True)}
    if task == "classification":
        logistic = (lambda: mc.OneVsRestClassifier(linear_model.LogisticRegression())) \
            if multiclass else linear_model.LogisticRegression
        return {
            "ColumnarClassifier": (lambda seed: ColumnarClassifier(seed=seed), True),
            "LogisticRegression (scaled)": (scaled(logistic), False),
            "KNNClassifier (scaled)": (scaled(neighbors.KNNClassifier), False),
            "HoeffdingAdaptiveTree": (
                lambda seed: tree.HoeffdingAdaptiveTreeClassifier(seed=seed), True),
            "ARF (3 trees)": (lambda seed: forest.ARFClassifier(n_models=3, seed=seed), True)}
    m = SEASON[dataset]
    return {
        "ColumnarForecaster": (lambda seed: ColumnarForecaster(seed=seed), True),
        "HoltWinters": (lambda seed: time_series.HoltWinters(
            alpha=0.3, beta=0.1, gamma=0.6, seasonality=m, multiplicative=True), False),
        "SNARIMAX": (lambda seed: time_series.SNARIMAX(
            p=m, d=1, q=m, m=m, sd=1, regressor=preprocessing.StandardScaler()
            | linear_model.LinearRegression(optimizer=optim.SGD(0.01), intercept_lr=0.3)),
            False),
        "SNARIMAX + ColumnarRegressor": (lambda seed: time_series.SNARIMAX(
            p=m, d=1, q=m, m=m, sd=1, regressor=ColumnarRegressor(seed=seed)), True)}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_job(dataset: str, task: str, label: str, seed: int) -> dict:
    """One model on one dataset, in this process: metric, events/s, peak memory (MB)."""
    from river import datasets, metrics

    data = list(getattr(datasets, dataset)())
    classes = {y for _, y in data} if task == "classification" else ()
    model = models(task, dataset, len(classes) > 2)[label][0](seed)
    metric = metrics.Accuracy() if task == "classification" else metrics.MAE()
    if task == "forecasting":
        ours = label == "ColumnarForecaster"

        def loop():
            for t, (x, y) in enumerate(data):
                if t >= SEASON[dataset]:  # River's forecasters model y alone
                    metric.update(y, model.forecast(1, [x] if ours else None)[0])
                model.learn_one(y, x) if ours else model.learn_one(y)
    else:
        def loop():
            for x, y in data:
                y_pred = model.predict_one(x)
                if y_pred is not None:
                    metric.update(y, y_pred)
                model.learn_one(x, y)
    return measure(loop, metric, len(data))


def measure(loop, metric, events: int) -> dict:
    """Run ``loop``, which streams ``events`` events and updates ``metric``: the metric,
    events/s, and the peak resident set size while it ran less the size before (MB)."""
    before = _rss_mb()
    start = time.perf_counter()
    loop()
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"metric": metric.get(), "events_per_s": events / elapsed,
            "peak_mb": max(peak - before, 0.0)}


def _subprocess(argv: list, stdin: str = "") -> dict:
    out = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True, cwd=HERE)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _plain_stream(dataset: str) -> str:
    """The dataset as JSON [[x, y], ...] with its numeric features (bools as 0/1), for
    deep_river_worker.py."""
    from river import datasets

    return json.dumps([[{k: float(v) for k, v in x.items() if isinstance(v, (int, float))}, y]
                       for x, y in getattr(datasets, dataset)()])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--deep-river-python", default=os.environ.get("DEEP_RIVER_PYTHON"))
    parser.add_argument("--job", nargs=4, metavar=("DATASET", "TASK", "MODEL", "SEED"),
                        help=argparse.SUPPRESS)
    add_quiet(parser)
    args = parser.parse_args()
    if args.job:
        dataset, task, label, seed = args.job
        print(json.dumps(run_job(dataset, task, label, int(seed))))
        return
    print(f"# machine: {machine()}; {args.seeds} seeds where a model has one")
    plan = []  # (dataset, task, label, seeds)
    for dataset, task in DATASETS:
        labels = list(models(task, dataset, dataset == "ImageSegments"))
        if args.deep_river_python:
            labels.append(DEEP_RIVER)
        for label in labels:
            seeded = label == DEEP_RIVER or models(task, dataset, True)[label][1]
            plan.append((dataset, task, label, args.seeds if seeded else 1))
    bar = Progress(sum(seeds for *_, seeds in plan), "run", args.quiet)
    rows = []
    for dataset, task, label, seeds in plan:
        runs = []
        for seed in range(seeds):
            if label == DEEP_RIVER:
                runs.append(_subprocess(
                    [args.deep_river_python, "deep_river_worker.py", task, str(seed),
                     str(SEASON.get(dataset, 0))], _plain_stream(dataset)))
            else:
                runs.append(_subprocess([sys.executable, os.path.basename(__file__), "--job",
                                         dataset, task, label, str(seed)]))
            bar.update()
        values = [r["metric"] for r in runs]
        row = {"dataset": dataset, "task": task, "model": label,
               "metric": statistics.mean(values),
               "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
               "events_per_s": statistics.median(r["events_per_s"] for r in runs),
               "peak_mb": max(r["peak_mb"] for r in runs)}
        rows.append(row)
        print(f"{dataset:18s} {METRIC[task]:15s} {label:30s} {row['metric']:9.4f} +- "
              f"{row['sd']:.4f}  {row['events_per_s']:>11,.0f} events/s  "
              f"{row['peak_mb']:6.1f} MB", flush=True)
    bar.close()
    _summary(rows)
    _table(rows)
    _plot(rows, os.path.join(HERE, "river_datasets.png"))


def _better(task: str, a: float, b: float) -> bool:
    return a > b if task == "classification" else a < b


def _summary(rows: list) -> None:
    """Rows where ours beats deep-river, and at what speed ratio."""
    by = {(r["dataset"], r["model"]): r for r in rows}
    wins, total, ratios = 0, 0, []
    for dataset, task in DATASETS:
        deep, ours = by.get((dataset, DEEP_RIVER)), by[(dataset, OURS[task])]
        if deep is None:
            continue
        total += 1
        wins += _better(task, ours["metric"], deep["metric"])
        ratios.append(ours["events_per_s"] / deep["events_per_s"])
    if total:
        print(f"\nbetter than {DEEP_RIVER} on {wins} of {total} datasets; events/s ratio "
              f"{min(ratios):,.0f}x to {max(ratios):,.0f}x")


def _table(rows: list) -> None:
    print("\n| dataset | metric | model | mean ± sd | events/s | peak MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {METRIC[r['task']]} | {r['model']} | "
              f"{r['metric']:.4f} ± {r['sd']:.4f} | {r['events_per_s']:,.0f} | "
              f"{r['peak_mb']:.1f} |")


def _plot(rows: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(18, 8))
    for ax, (dataset, task) in zip(axes.flat, DATASETS):
        mine = [r for r in rows if r["dataset"] == dataset]
        ax.barh([r["model"] for r in mine], [r["metric"] for r in mine],
                xerr=[r["sd"] for r in mine],
                color=["tab:red" if r["model"] == OURS[task] else "tab:gray" for r in mine])
        if task != "classification":  # a diverged model off the scale, its value written
            right = 3 * statistics.median(r["metric"] for r in mine)
            ax.set_xlim(0, right)
            for i, r in enumerate(mine):
                if r["metric"] > right:
                    ax.text(right * 0.98, i, f"{r['metric']:.3g}", ha="right", va="center",
                            fontsize=7, color="white")
        better = "higher" if task == "classification" else "lower"
        ax.set_title(f"{dataset}\n{METRIC[task]}, {better} is better", fontsize=9)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nplot: {path}")


if __name__ == "__main__":
    main()
