"""The 2021 paper's gradient test-bed: how close is the columnar estimate to the true gradient
as lateral connections between columns get denser?

20 columns, 50 Bernoulli(0.5) inputs, targets U(-50, 50), 50-step sequences, an untrained
network (recurrent and lateral weights U(-s, s), s = 0.5 by default, head weights N(0, 1)); per seed and density the
learner's summed online estimate is compared with the exact BPTT gradient
(streamlearn.diagnostics). Also the meta-gradient estimate (head learning by LMS, step 0.001)
against the exact meta-gradient through the unrolled inner loop.

    python benchmarks/gradient_fidelity.py [--seeds 30] [--json] [--plot FILE.png]
"""

import argparse
import json

import numpy as np

from common import Progress, add_quiet, machine
from streamlearn import ColumnarRegressor
from streamlearn.diagnostics import gradient_fidelity

DENSITIES = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
METRICS = ("sign_agreement", "cosine", "abs_error")
# The paper's figures (PAPER.md section 4): sign agreement, rerun of the authors' test-bed.
PAPER = {"integrator": (1.00, 0.99, 0.97, 0.90, 0.76, 0.58, 0.56, 0.53),
         "gated": (1.00, 0.99, 0.98, 0.91, 0.82, 0.71, 0.66, 0.67)}


def one(seed: int, density: float, meta: bool, init_scale: float) -> dict:
    rng = np.random.default_rng(seed)
    stream = [({f"x{j}": float(v) for j, v in enumerate(rng.integers(0, 2, 50))},
               float(rng.uniform(-50, 50))) for _ in range(50)]
    model = ColumnarRegressor(n_columns=20, normalize=False, optimizer="sgd", step_size=0.0,
                              lateral_density=density, meta=meta, head_step_size=0.001,
                              init_scale=init_scale, seed=seed)
    state = model.state_dict()
    state["head_weights"] = rng.normal(size=20)
    model.load_state_dict(state)
    return gradient_fidelity(model, stream)


def summarise(values: list) -> tuple:
    """Mean and 95% t-interval half-width."""
    values = np.asarray(values, dtype=float)
    t = {1: 12.71, 2: 4.30, 3: 3.18, 5: 2.57, 10: 2.23, 30: 2.045}.get(len(values), 1.96)
    half = t * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(values.mean()), float(half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--plot", help="write a PNG of agreement against density")
    parser.add_argument("--init-scale", type=float, default=0.5,
                        help="recurrent and lateral weights start U(-s, s) (default 0.5)")
    add_quiet(parser)
    args = parser.parse_args()
    rows = []
    bar = Progress(len(DENSITIES) * 2 * args.seeds, "seed", args.quiet)
    for density in DENSITIES:
        row = {"density": density}
        for meta in (False, True):
            reports = []
            for seed in range(args.seeds):
                reports.append(one(seed, density, meta, args.init_scale))
                bar.update()
            summary = {k: summarise([r[k] for r in reports]) for k in METRICS}
            target = row.setdefault("meta", {}) if meta else row
            for k, (mean, half) in summary.items():
                target[k] = mean
                target[f"{k}_ci95"] = [mean - half, mean + half]
        rows.append(row)
    bar.close()
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"# machine: {machine()}; {args.seeds} seeds; init U(-{args.init_scale}, "
              f"{args.init_scale}); mean +- 95% interval")
        print(f"{'density':>8} | {'sign agreement':>16} {'cosine':>16} {'abs error':>16} |"
              f" {'paper sign (gated)':>18} | {'meta sign':>16} {'meta cosine':>16}")
        for row, paper in zip(rows, PAPER["gated"]):
            cells = [f"{row[k]:.3f} +- {row[k + '_ci95'][1] - row[k]:.3f}" for k in METRICS]
            meta = [f"{row['meta'][k]:.3f} +- {row['meta'][k + '_ci95'][1] - row['meta'][k]:.3f}"
                    for k in ("sign_agreement", "cosine")]
            print(f"{row['density']:>8} | {cells[0]:>16} {cells[1]:>16} {cells[2]:>16} |"
                  f" {paper:>18.2f} | {meta[0]:>16} {meta[1]:>16}")
    if args.plot:
        plot(rows, args.plot)


def plot(rows: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    densities = [r["density"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label, data in (("sign_agreement", "sign agreement", rows),
                             ("cosine", "cosine", rows)):
        mean = [r[key] for r in data]
        low = [r[f"{key}_ci95"][0] for r in data]
        high = [r[f"{key}_ci95"][1] for r in data]
        ax.plot(densities, mean, marker="o", label=f"columnar estimate: {label}")
        ax.fill_between(densities, low, high, alpha=0.2)
    ax.plot(densities, [r["meta"]["sign_agreement"] for r in rows], marker="s",
            linestyle="--", label="meta-gradient estimate: sign agreement")
    ax.plot(densities, PAPER["gated"], marker="x", linestyle=":", color="grey",
            label="paper (gated cell): sign agreement")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlabel("lateral connection density (symlog; 0 at left)")
    ax.set_ylabel("agreement with the true gradient")
    ax.set_ylim(0.4, 1.02)
    ax.axhline(0.5, color="black", linewidth=0.5)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Gradient fidelity: 20 columns, 50 inputs, 50 steps")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
