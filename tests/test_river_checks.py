"""River's own estimator checks on the defaults ([0]) and every _unit_test_params configuration
of each estimator."""

import pytest
from river import checks

from streamlearn import ColumnarClassifier, ColumnarForecaster, ColumnarRegressor, ColumnarTD


def _configurations(cls):
    yield cls()
    for params in cls._unit_test_params():
        yield cls(**params)


@pytest.mark.parametrize(
    "model, check",
    [
        pytest.param(model, check, id=f"{cls.__name__}[{i}]:{check.__name__}")
        for cls in (ColumnarClassifier, ColumnarForecaster, ColumnarRegressor, ColumnarTD)
        for i, model in enumerate(_configurations(cls))
        for check in checks.yield_checks(model)
    ],
)
def test_river_check(model, check):
    check(model.clone())
