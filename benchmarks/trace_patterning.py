"""Trace patterning (PAPER.md section 7): mean squared return error of TD(lambda) predictors
against steps, for columnar, constructive, columnar-constructive (CCN) networks and a dense
LSTM trained with truncated BPTT, at about the same compute per step.

    python benchmarks/trace_patterning.py [--steps 5000000] [--seeds 5] [--first-seed 0]
                                          [--jobs 2] [--methods columnar,...]
                                          [--params JSON] [--plot FILE.png] [--json]

MSRE: the mean of (V(S_t) - G_t)^2 over the last --window steps (100,000, as in the paper),
reported at 2M steps (issue 5's columnar target) and at the end. Every learner uses the
library defaults where they apply (step size 0.001, gamma 0.9, lambda 0.99, RMSProp-normalised
TD step): ColumnarTD() exactly as constructed with no arguments; constructive = 20 stages of
1 column; CCN = 2 stages of 10; the stage length is the run length divided by the number of
stages. ``--params`` overrides ColumnarTD arguments for the three columnar methods (how the
defaults were chosen: on seeds 10-14, then measured on seeds 0-4).
"""

import argparse
import json
import multiprocessing
import time

import numpy as np

from common import Progress, add_quiet, machine
from streamlearn import ColumnarTD
from streamlearn.baselines import TruncatedBPTTTD
from streamlearn.datasets import TracePatterning

REFERENCES = [("always 0", 0.020), ("best constant", 0.0187),
              ("knows only the time since the CS", 0.012),
              ("time and validity, not whether the US came", 0.0067),
              ("floor: time, validity and US seen", 0.0017)]
METHODS = ("columnar", "constructive", "ccn", "tbptt")
CHECKPOINT = 2_000_000  # issue 5: ColumnarTD() below 0.006 here
FEATURES = [f"cs{i}" for i in range(6)] + ["us"] + [f"d{k}" for k in range(1, 6)]


def make(method: str, steps: int, seed: int, params: dict):
    if method == "columnar":
        return ColumnarTD(seed=seed, **params)
    if method == "constructive":
        return ColumnarTD(columns_per_stage=1, steps_per_stage=max(1, steps // 20), seed=seed,
                          **params)
    if method == "ccn":
        return ColumnarTD(columns_per_stage=10, steps_per_stage=max(1, steps // 2), seed=seed,
                          **params)
    return TruncatedBPTTTD(FEATURES, hidden=10, truncation=8, seed=seed)


def checkpoints(steps: int) -> list:
    """Where the table reports MSRE: at 2M steps (if the run is that long) and at the end."""
    return sorted({min(CHECKPOINT, steps), steps})


def cost(model) -> int:
    """Multiply-adds per step: ColumnarTD about 12 per recurrent parameter (forward 1, RTRL
    traces 6, eligibility 1, RMSProp step 4)."""
    if isinstance(model, TruncatedBPTTTD):
        return model.multiply_adds_per_step()
    return 12 * model.n_parameters


def run(job: tuple) -> dict:
    method, seed, steps, window, every, params = job
    model = make(method, steps, seed, params)
    stream = TracePatterning(seed=seed, n=steps)
    squared = np.empty(steps)
    start = time.perf_counter()
    t = 0
    if method == "tbptt":  # per step in Python: the baseline has no chunk API
        for x, cumulant, ret in stream:
            squared[t] = (model.learn_one(x, cumulant) - ret) ** 2
            t += 1
    else:  # learn_many: the values each row was scored on, V(S_t) before learning from it
        for X, cumulants, returns in stream.chunks(every):
            values = model.learn_many(X, cumulants, feature_names=stream.feature_names)
            squared[t:t + len(X)] = (values - returns) ** 2
            t += len(X)
    elapsed = time.perf_counter() - start
    cumulative = np.concatenate([[0.0], np.cumsum(squared)])

    def msre(t):
        return (cumulative[t] - cumulative[max(0, t - window)]) / min(t, window)

    return {"method": method, "seed": seed, "seconds": elapsed,
            "curve": [(t, msre(t)) for t in range(every, steps + 1, every)],
            "at": {t: msre(t) for t in checkpoints(steps)},
            "steps_per_second": steps / elapsed, "multiply_adds": cost(model),
            "parameters": model.n_parameters}


def interval(values) -> tuple:
    values = np.asarray(values, dtype=float)
    t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78}.get(len(values), 2.0)
    half = t * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5_000_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--params", type=json.loads, default={},
                        help='ColumnarTD arguments as JSON, e.g. \'{"normalize": false}\'')
    parser.add_argument("--window", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--plot")
    parser.add_argument("--json", action="store_true")
    add_quiet(parser)
    args = parser.parse_args()
    methods = args.methods.split(",")
    every = max(1, args.steps // 100)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(m, s, args.steps, args.window, every, args.params) for m in methods for s in seeds]
    start = time.perf_counter()
    bar, results = Progress(len(jobs) * args.steps, "step", args.quiet), []
    with multiprocessing.Pool(args.jobs) as pool:
        for result in pool.imap(run, jobs, chunksize=1):  # in order, as map gives them
            results.append(result)
            bar.update(args.steps)
    bar.close()
    wall = time.perf_counter() - start
    if args.json:
        print(json.dumps(results))
        return
    print(f"# machine: {machine()}; {args.steps:,} steps x seeds {list(seeds)} x "
          f"{len(methods)} methods on {args.jobs} processes: {wall / 60:.1f} min; "
          f"ColumnarTD arguments {args.params or 'default'}")
    print(f"{'method':>13} {'params':>7} {'mult-adds':>10} {'steps/s':>8} "
          + " ".join(f"{f'MSRE at {t:,} (mean +- 95%)':>30} {'per seed':>{8 * args.seeds}}"
                     for t in checkpoints(args.steps)))
    for method in methods:
        rs = [r for r in results if r["method"] == method]
        line = f"{method:>13} {rs[0]['parameters']:>7} {rs[0]['multiply_adds']:>10} " \
               f"{np.mean([r['steps_per_second'] for r in rs]):>8.0f}"
        for t in checkpoints(args.steps):
            values = [r["at"][t] for r in rs]
            mean, half = interval(values)
            line += f" {mean:>20.5f} +- {half:.5f} {' '.join(f'{v:.5f}' for v in values)}"
        print(line)
    print("reference levels: " + "; ".join(f"{name} {value}" for name, value in REFERENCES))
    if args.plot:
        plot(results, methods, args.plot)


def plot(results: list, methods: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for method in methods:
        rs = [r for r in results if r["method"] == method]
        steps = [t for t, _ in rs[0]["curve"]]
        curves = np.array([[v for _, v in r["curve"]] for r in rs])
        mean = curves.mean(axis=0)
        ax.plot(steps, mean, label=method)
        if len(rs) > 1:
            half = 1.96 * curves.std(axis=0, ddof=1) / np.sqrt(len(rs))
            ax.fill_between(steps, mean - half, mean + half, alpha=0.2)
    for name, value in REFERENCES:
        ax.axhline(value, color="grey", linewidth=0.6, linestyle=":")
        ax.text(steps[0], value, name, fontsize=7, va="bottom", color="grey")
    ax.set_yscale("log")
    ax.set_xlabel("steps")
    ax.set_ylabel("MSRE (last 100k steps)")
    ax.set_title("Trace patterning: TD(lambda) prediction of the US")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
