"""``streamlearn-demo``: a ColumnarRegressor and River's LinearRegression side by side on a
stream that needs memory, printing the progressive MAE as the stream goes."""

import argparse
import json
import time

from river import linear_model, metrics

from streamlearn import ColumnarRegressor
from streamlearn.datasets import MovingAverage


def write_events(path: str, steps: int, seed: int, sensors: int = 5) -> None:
    """Interleave ``sensors`` MovingAverage streams as service events, keyed by sensor."""
    streams = [iter(MovingAverage(n=steps, seed=seed + k)) for k in range(sensors)]
    with open(path, "w", encoding="utf-8") as f:
        for t in range(steps):
            k = t % sensors
            x, y = next(streams[k])
            event = {"key": f"sensor-{k}", "x": x, "y": None if t % 10 == 9 else y}
            f.write(json.dumps(event) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=2_000, help="print every N steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-events", metavar="FILE",
                        help="instead, write a keyed JSON-lines event stream for "
                             "streamlearn-service (5 sensors, every 10th event unlabelled)")
    args = parser.parse_args(argv)
    if args.write_events:
        write_events(args.write_events, args.steps, args.seed)
        return
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
