"""ColumnarForecaster: River's Forecaster API over a ColumnarRegressor that learns what a
seasonal naive forecast misses."""

from __future__ import annotations

import collections
import datetime as dt
import math
import numbers

from river.time_series.base import Forecaster

from streamlearn import serialization
from streamlearn._features import as_finite
from streamlearn.columnar import ColumnarRegressor
from streamlearn.serialization import SerializationError

__all__ = ["ColumnarForecaster"]

FORMAT_VERSION = 1
# The regressor's input holding the previous step's residual.
RESIDUAL = "residual"
# The season found from the spacing of consecutive datetimes (seasonality="auto"), by that
# spacing in days: (lowest, highest, season).
SEASONS = ((1 / 24 - 1e-9, 1 / 24 + 1e-9, 24), (1 - 1e-9, 1 + 1e-9, 7), (7 - 1e-9, 7 + 1e-9, 52),
           (28, 31, 12), (89, 92, 4))


def season_of(spacing: dt.timedelta) -> int:
    """The season of a series sampled every ``spacing``: a day in hours, a week in days, a
    year in weeks, months or quarters; 0 for any other spacing."""
    days = spacing.total_seconds() / 86400
    return next((season for low, high, season in SEASONS if low <= days <= high), 0)


def _datetimes(x: dict) -> list:
    return [value for value in x.values() if isinstance(value, (dt.date, dt.datetime))]


class ColumnarForecaster(Forecaster):
    """Columnar recurrent network forecasting a time series online.

    The forecast of y_t is a seasonal naive forecast plus what a
    :class:`~streamlearn.ColumnarRegressor` learns it misses:
    ``y_t = y_{t-1} + (y_{t-m} - y_{t-m-1}) + r_t`` with season m (without one,
    ``y_{t-1} + r_t``). The regressor learns r_t online, reading the previous residual
    r_{t-1}, the exogenous features of x, and calendar features of its datetimes; its
    columns carry the memory of the series' recent course.

    A forecast over several steps rolls a copy of the recurrent state forward on the model's
    own forecasts, step by step; the learner itself does not change.

    Features of ``x``: numbers (bools as 0/1) are inputs as they are; a string value is a
    one-hot input ``name=value``; a date or datetime gives one-hot month-of-year and
    day-of-week inputs (``calendar=True``) and is otherwise ignored. NaN, infinite and other
    values are refused with an error, and nothing changes.

    Parameters
    ----------
    seasonality
        The season m in steps; ``"auto"`` takes it from the spacing of the first two
        datetimes in x (hourly: 24, daily: 7, weekly: 52, monthly: 12, quarterly: 4; no
        season without datetimes or for another spacing); ``None`` or 0: no season.
    calendar
        Whether datetimes in x give month-of-year and day-of-week inputs.
    n_columns, step_size, optimizer, normalize, init_scale, dtype, seed
        Those of the :class:`~streamlearn.ColumnarRegressor` that learns the residual.

    Examples
    --------

    One-step forecasts, each made before the value arrives (River's ``evaluate.evaluate``
    scores its horizon step h against the value h + 1 steps after the last one learned):

    >>> import datetime as dt
    >>> from river import datasets, metrics
    >>> from streamlearn import ColumnarForecaster

    >>> model, mae = ColumnarForecaster(seed=42), metrics.MAE()
    >>> for x, y in datasets.AirlinePassengers():
    ...     mae.update(y, model.forecast(horizon=1, xs=[x])[0])
    ...     model.learn_one(y, x)
    >>> mae
    MAE: 10.471641
    >>> months = [{"month": dt.date(1961, month, 1)} for month in (1, 2, 3)]
    >>> [round(value) for value in model.forecast(horizon=3, xs=months)]
    [444, 419, 443]

    """

    PARAMS = ("seasonality", "calendar", "n_columns", "step_size", "optimizer", "normalize",
              "init_scale", "dtype", "seed")

    def __init__(
        self,
        seasonality: int | str | None = "auto",
        calendar: bool = True,
        n_columns: int = 20,
        step_size: float = 0.05,
        optimizer: str = "rmsprop",
        normalize: bool = True,
        init_scale: float = 0.5,
        dtype: str = "float64",
        seed: int | None = None,
    ):
        self.seasonality = seasonality
        self.calendar = calendar
        self.n_columns = n_columns
        self.step_size = step_size
        self.optimizer = optimizer
        self.normalize = normalize
        self.init_scale = init_scale
        self.dtype = dtype
        self.seed = seed
        if not (seasonality is None or seasonality == "auto" or (
                isinstance(seasonality, numbers.Integral) and not isinstance(seasonality, bool)
                and 0 <= seasonality <= 100_000)):
            raise ValueError(f"seasonality must be 'auto', None or an int in [0, 100000], got "
                             f"{seasonality!r}")
        if not isinstance(calendar, bool):
            raise ValueError(f"calendar must be a bool, got {calendar!r}")
        self._regressor = ColumnarRegressor(
            n_columns=n_columns, step_size=step_size, optimizer=optimizer, normalize=normalize,
            init_scale=init_scale, dtype=dtype, seed=seed)
        self._season = None if seasonality == "auto" else int(seasonality or 0)
        self._first_time = None   # the first datetime seen, while the season is not known
        self._history = collections.deque(maxlen=self._keep())
        self._residual = 0.0

    @classmethod
    def _unit_test_params(cls):
        yield {"seed": 1}
        yield {"seasonality": 3, "n_columns": 4, "seed": 2}
        yield {"seasonality": None, "calendar": False, "n_columns": 3, "seed": 3}

    def _keep(self) -> int:
        """Values of y the seasonal naive forecast needs: m + 1 (1 without a season)."""
        return (self._season or 0) + 1

    # ---- River's API ------------------------------------------------------------------------

    def learn_one(self, y: float, x: dict | None = None) -> None:
        """Learn y_t (with the exogenous features x_t of the same step), then advance."""
        y = as_finite("y", y)
        features = self._features(x, self._residual)  # validates x before anything changes
        base = self._base(self._history)
        if base is None:
            self._regressor.observe_one(features)
            residual = 0.0
        else:
            residual = y - base
            self._regressor.learn_one(features, residual)
        self._residual = residual
        self._history.append(y)
        if self._season is None:
            self._find_season(x)

    def forecast(self, horizon: int, xs: list | None = None) -> list:
        """Forecasts of the next ``horizon`` steps (``xs``: their exogenous features), each
        step read from a copy of the state rolled forward on the forecasts before it."""
        if isinstance(horizon, bool) or not isinstance(horizon, numbers.Integral) \
                or horizon < 0:
            raise ValueError(f"horizon must be an int >= 0, got {horizon!r}")
        if xs is not None and len(xs) < horizon:
            raise ValueError(f"xs has {len(xs)} entries for a horizon of {horizon}")
        steps = [self._features(xs[k] if xs is not None else None, 0.0)
                 for k in range(horizon)]  # validated before anything runs
        if not self._history:
            return [0.0] * horizon
        model = self._regressor
        history = collections.deque(self._history, maxlen=self._keep())
        residual, out = self._residual, []
        for k, features in enumerate(steps):
            features[RESIDUAL] = residual
            residual = model.predict_one(features)  # pure: the learner itself serves
            out.append(self._base(history) + residual)
            if k + 1 < horizon:  # another step follows: roll a copy on this forecast
                if model is self._regressor:
                    model = model._copy()
                model.observe_one(features)
                history.append(out[-1])
        return out

    # ---- features ---------------------------------------------------------------------------

    def _features(self, x: dict | None, residual: float) -> dict:
        """The regressor's input for a step with exogenous features x."""
        features = {RESIDUAL: residual}
        if x is None:
            return features
        if not isinstance(x, dict):
            raise TypeError(f"x must be a dict or None, got {type(x).__name__}")
        if RESIDUAL in x:
            raise ValueError(f"feature name {RESIDUAL!r} is reserved for the residual input")
        for name, value in x.items():
            if isinstance(value, (dt.date, dt.datetime)):
                if self.calendar:
                    features[f"{name}:month={value.month}"] = 1.0
                    features[f"{name}:weekday={value.weekday()}"] = 1.0
            elif isinstance(value, str):
                features[f"{name}={value}"] = 1.0
            else:
                features[name] = as_finite(name, value)
        return features

    def _base(self, history) -> float | None:
        """The seasonal naive forecast of the next value from the values before it."""
        if not history:
            return None
        m = self._season or 0
        if m and len(history) > m:
            return history[-1] + history[-m] - history[-m - 1]
        return history[-1]

    def _find_season(self, x: dict | None) -> None:
        """seasonality="auto": the season from the spacing of the first two datetimes."""
        times = _datetimes(x) if isinstance(x, dict) else []
        if not times:
            return
        if self._first_time is None:
            self._first_time = times[0]
            return
        try:
            spacing = times[0] - self._first_time
        except TypeError:  # a date, then a datetime
            spacing = dt.timedelta(0)
        self._season, self._first_time = season_of(spacing), None
        self._history = collections.deque(self._history, maxlen=self._keep())

    # ---- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The full learned state as plain data."""
        first = self._first_time.isoformat() if self._first_time is not None else None
        return {"format_version": FORMAT_VERSION, "class": type(self).__name__,
                "params": {name: getattr(self, name) for name in self.PARAMS},
                "season": self._season, "first_time": first,
                "history": list(self._history), "residual": self._residual,
                "regressor": self._regressor.state_dict()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "ColumnarForecaster":
        """A forecaster rebuilt from :meth:`state_dict` output, every entry checked."""
        if not isinstance(state, dict) or state.get("class") != cls.__name__ \
                or state.get("format_version") != FORMAT_VERSION:
            raise SerializationError(f"not a {cls.__name__} state of format {FORMAT_VERSION}")
        params = state.get("params")
        if not isinstance(params, dict) or set(params) != set(cls.PARAMS):
            raise SerializationError(f"state entry 'params' must list {cls.PARAMS}")
        try:
            model = cls(**params)
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"state entry 'params': {exc}") from None
        season, history = state.get("season"), state.get("history")
        if season is not None and (type(season) is not int or not 0 <= season <= 100_000):
            raise SerializationError("state entry 'season' must be None or an int")
        if not isinstance(history, list) or len(history) > (season or 0) + 1 or not all(
                type(v) in (int, float) and math.isfinite(v) for v in history):
            raise SerializationError("state entry 'history' must be a list of at most "
                                     "season + 1 finite numbers")
        residual = state.get("residual")
        if type(residual) not in (int, float) or not math.isfinite(residual):
            raise SerializationError("state entry 'residual' must be a finite number")
        first = state.get("first_time")
        try:  # a datetime's ISO form has a "T", a date's has not
            first = None if first is None else dt.datetime.fromisoformat(first) \
                if "T" in first else dt.date.fromisoformat(first)
        except (TypeError, ValueError):
            raise SerializationError("state entry 'first_time' must be an ISO datetime") \
                from None
        model._regressor.load_state_dict(state.get("regressor"))
        model._season, model._first_time, model._residual = season, first, float(residual)
        model._history = collections.deque(history, maxlen=model._keep())
        return model

    def to_bytes(self) -> bytes:
        """Deterministic, versioned bytes of :meth:`state_dict` (no pickle)."""
        return serialization.pack(self.state_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> "ColumnarForecaster":
        """Inverse of :meth:`to_bytes`; damaged bytes raise SerializationError."""
        return cls.from_state_dict(serialization.unpack(data))

    def __reduce__(self):
        """Pickle (River's clone, a Flink job's state) through :meth:`to_bytes`: the
        unpickler gets one bytes object that :meth:`from_bytes` checks, never the
        internals."""
        return type(self).from_bytes, (self.to_bytes(),)
