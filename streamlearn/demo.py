"""``streamlearn-demo``: a ColumnarRegressor and River's LinearRegression side by side on a
stream that needs memory, printing the progressive MAE as the stream goes."""

import argparse
import time

from river import linear_model, metrics

from streamlearn import ColumnarRegressor
from streamlearn.datasets import MovingAverage


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=2_000, help="print every N steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    models = {"ColumnarRegressor": ColumnarRegressor(seed=args.seed),
              "LinearRegression": linear_model.LinearRegression()}
    maes = {name: metrics.MAE() for name in models}
    print(f"stream: y = 1000 + 100 * EMA_0.9(u), x = {{u, noise}}; {args.steps} steps")
    print(f"{'step':>8} " + " ".join(f"{name + ' MAE':>22}" for name in models))
    start = time.perf_counter()
    for t, (x, y) in enumerate(MovingAverage(n=args.steps, seed=args.seed), start=1):
        for name, model in models.items():
            maes[name].update(y, model.predict_one(x))
            model.learn_one(x, y)
        if t % args.every == 0 or t == args.steps:
            print(f"{t:>8} " + " ".join(f"{maes[name].get():>22.3f}" for name in models))
    print(f"done in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
