"""River's own estimator checks on the defaults ([0]) and every _unit_test_params configuration."""

import pytest
from river import checks

from streamlearn import ColumnarRegressor


def _configurations():
    yield ColumnarRegressor()
    for params in ColumnarRegressor._unit_test_params():
        yield ColumnarRegressor(**params)


@pytest.mark.parametrize(
    "model, check",
    [
        pytest.param(model, check, id=f"ColumnarRegressor[{i}]:{check.__name__}")
        for i, model in enumerate(_configurations())
        for check in checks.yield_checks(model)
    ],
)
def test_river_check(model, check):
    check(model.clone())
