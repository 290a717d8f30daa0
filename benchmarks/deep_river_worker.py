"""deep-river's rolling LSTM on one of River's bundled datasets, for river_datasets.py.

Runs in deep-river's own venv (River 0.25, torch CPU; see benchmarks/README.md). Reads the
stream as JSON on stdin, [[x, y], ...] (river_datasets.py sends it: River 0.25 lacks some of
the datasets), and prints one JSON line: {"metric": ..., "events_per_s": ..., "peak_mb": ...},
measured as river_datasets.py measures its own runs.

    python deep_river_worker.py TASK SEED FIRST_SCORED_STEP < stream.json
    (TASK: regression | classification | forecasting)

The recipe: the numeric features (bools as 0/1) behind River's StandardScaler (and the target
behind TargetStandardScaler), a window of
the last 10 events fed to an LSTM with 16 units and a linear head, Adam at 1e-3 (the
classifier: one logit per class, cross-entropy). Forecasting: the same regressor reads the
previous value and forecasts the next one, scored from FIRST_SCORED_STEP on.
"""

import json
import sys

import torch
from deep_river.classification import RollingClassifier
from deep_river.regression import RollingRegressor
from river import metrics, preprocessing
from river_datasets import measure
from torch import nn


class LSTMHead(nn.Module):
    def __init__(self, n_features: int, n_outputs: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(n_features, 16)
        self.head = nn.Linear(16, n_outputs)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[-1])


def _numeric(x: dict, keys: list) -> dict:
    return {k: float(x[k]) for k in keys}


def run(data: list, task: str, seed: int, first: int) -> dict:
    torch.manual_seed(seed)
    if task == "forecasting":  # the previous value is the one feature
        data = [({"y_prev": float(data[t - 1][1]) if t else 0.0}, y)
                for t, (_, y) in enumerate(data)]
    keys = sorted(k for k, v in data[0][0].items() if isinstance(v, (int, float)))
    if task == "classification":
        classes = sorted({y for _, y in data}, key=str)
        model = preprocessing.StandardScaler() | RollingClassifier(
            module=LSTMHead(len(keys), len(classes)), loss_fn="cross_entropy",
            optimizer_fn="adam", lr=1e-3, window_size=10, seed=seed)
        metric = metrics.Accuracy()
    else:
        model = preprocessing.TargetStandardScaler(
            preprocessing.StandardScaler() | RollingRegressor(
                module=LSTMHead(len(keys)), optimizer_fn="adam", lr=1e-3, window_size=10,
                seed=seed))
        metric = metrics.MAE()

    def loop():
        for t, (x, y) in enumerate(data):
            x = _numeric(x, keys)
            y_pred = model.predict_one(x)
            if y_pred is not None and t >= first:
                metric.update(y, y_pred)
            model.learn_one(x, y)

    return measure(loop, metric, len(data))


if __name__ == "__main__":
    print(json.dumps(run(json.load(sys.stdin), sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
