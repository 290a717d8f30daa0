"""Against the tools users would pick instead, in one run, at about 5,000 parameters:
ColumnarRegressor through River's API versus a PyTorch LSTMCell learning online with
truncation 1 (hidden state detached every step, one backward and one RMSprop step per event),
both on one thread. deep-river is measured when importable (its releases pin older River and
PyTorch than this project uses, so it usually lives in its own environment).

    python benchmarks/peers.py [--steps 3000] [--repeats 3]
"""

import argparse
import statistics

import numpy as np

from common import Progress, add_quiet, best_of, machine
from streamlearn import ColumnarRegressor


def rows(steps: int):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(steps, 8))
    return [{f"x{j}": float(v) for j, v in enumerate(r)} for r in X], rng.normal(size=steps)


def river_rate(model, xs, ys, repeats: int) -> list:
    def run():
        for x, y in zip(xs, ys):
            model.predict_one(x)
            model.learn_one(x, float(y))
    run()
    return [len(xs) / t for t in best_of(run, repeats)]


def torch_rate(xs, ys, repeats: int, hidden: int, dtype: str) -> tuple:
    import torch

    torch.set_num_threads(1)
    kind = getattr(torch, dtype)
    cell, head = torch.nn.LSTMCell(8, hidden), torch.nn.Linear(hidden, 1)
    cell, head = cell.to(kind), head.to(kind)
    params = list(cell.parameters()) + list(head.parameters())
    optimizer = torch.optim.RMSprop(params, lr=1e-3)
    X = torch.tensor(np.array([[x[f"x{j}"] for j in range(8)] for x in xs]), dtype=kind)
    Y = torch.tensor(ys, dtype=kind)
    state = [torch.zeros(1, hidden, dtype=kind)] * 2

    def run():
        h, c = state
        for t in range(len(xs)):
            h, c = cell(X[t:t + 1], (h.detach(), c.detach()))
            loss = 0.5 * (head(h)[0, 0] - Y[t]) ** 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    run()
    return [len(xs) / t for t in best_of(run, repeats)], sum(p.numel() for p in params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    add_quiet(parser)
    args = parser.parse_args()
    xs, ys = rows(args.steps)
    print(f"# machine: {machine()}; {args.steps} steps, 8 features, min/median/max of "
          f"{args.repeats}")
    try:
        import torch  # noqa: F401
    except ImportError:
        torch = None
        print("PyTorch: not installed, skipped (pip install torch)")
    bar = Progress(2 if torch is None else 4, "learner", args.quiet)
    for dtype in ("float64", "float32"):  # each side in the same precision
        ours = ColumnarRegressor(n_columns=125, seed=0, dtype=dtype)
        ours_rate = river_rate(ours, xs, ys, args.repeats)
        print(f"ColumnarRegressor, 125 columns ({ours.n_parameters} parameters), {dtype}: "
              f"{'/'.join(f'{v:,.0f}' for v in sorted(ours_rate))} steps/s")
        bar.update()
        if torch is None:
            continue
        rate, n = torch_rate(xs, ys, args.repeats, 30, dtype)
        print(f"PyTorch LSTMCell(8, 30) + Linear, truncation 1, RMSprop, {dtype} ({n} "
              f"parameters): {'/'.join(f'{v:,.0f}' for v in sorted(rate))} steps/s; "
              f"ColumnarRegressor is {statistics.median(ours_rate) / statistics.median(rate):.1f}x")
        bar.update()
    bar.close()
    try:
        from deep_river.regression import RNNRegressor  # noqa: F401
    except ImportError:
        print("deep-river: not importable here, skipped (it pins River < 0.26 and PyTorch < 2.6)")


if __name__ == "__main__":
    main()
