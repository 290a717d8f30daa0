"""Service configuration: a frozen dataclass built once from an optional TOML file and flags.

Flags override the file. The model is chosen by name from :data:`MODELS` with parameters
given as ``KEY=VALUE`` (VALUE read as JSON, else as a string): nothing is evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib

from streamlearn import ColumnarRegressor, ColumnarTD, serialization

from .events import Limits
from .health import STALL_SECONDS

__all__ = ["Config", "MODELS", "build_model", "learner_class", "parse_param",
           "parse_partitions", "parse_partition_range"]

MODELS = {"columnar": ColumnarRegressor}


@dataclasses.dataclass(frozen=True)
class Config:
    source: str
    model: str = "columnar"
    params: tuple = ()  # ((key, value), ...)
    seed: int = 0
    metrics_address: str | None = "127.0.0.1:9464"
    checkpoint_dir: str = "streamlearn-checkpoint"
    checkpoint_every: int = 0         # events between checkpoints; 0: by time only
    checkpoint_interval: float = 30.0
    max_learners: int = 100_000
    predictions: str | None = None
    dead_letter: str | None = None
    follow: bool = False
    max_features: int = 1_000
    max_line_bytes: int = 1 << 20
    reset_after: int = 10
    partitions: tuple = ()            # the partitions of a redis:// source to own; (): all
    stall_seconds: float = STALL_SECONDS  # /healthz fails after a stall this long
    quiet: bool = False               # no progress bar (there is one only on a terminal)

    @classmethod
    def build(cls, args, file: str | None = None) -> "Config":
        """From parsed argparse ``args`` (None means unset) over the TOML ``file``."""
        values = {}
        if file:
            with open(file, "rb") as f:
                data = tomllib.load(f)
            unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                raise ValueError(f"unknown keys in {file}: {sorted(unknown)}")
            values.update(data)
            if "params" in values:
                values["params"] = tuple(sorted(dict(values["params"]).items()))
            if isinstance(values.get("partitions"), list):
                values["partitions"] = tuple(values["partitions"])
        for field in dataclasses.fields(cls):
            value = getattr(args, field.name, None)
            if field.name == "params" and value:  # flags override the file per parameter
                value = tuple(sorted({**dict(values.get("params", ())), **dict(value)}.items()))
            if value is not None and value is not False:
                values[field.name] = value
        if "source" not in values:
            raise ValueError("a --source is required")
        config = cls(**values)
        if config.model not in MODELS:
            raise ValueError(f"unknown model {config.model!r}; choose from {sorted(MODELS)}")
        for name in ("checkpoint_every", "max_learners", "max_features", "max_line_bytes",
                     "reset_after"):
            value, low = getattr(config, name), 0 if name == "checkpoint_every" else 1
            if type(value) is not int or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        partitions = config.partitions
        if not isinstance(partitions, tuple) or not all(
                type(p) is int and p >= 0 for p in partitions) \
                or len(set(partitions)) != len(partitions):
            raise ValueError(f"partitions must be distinct ints >= 0, got {partitions!r}")
        for name in ("checkpoint_interval", "stall_seconds"):
            value = getattr(config, name)
            if type(value) not in (int, float) or not value > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        return config

    @property
    def limits(self) -> Limits:
        return Limits(max_line_bytes=self.max_line_bytes, max_features=self.max_features)


def parse_param(text: str) -> tuple:
    """``KEY=VALUE`` with VALUE parsed as JSON (numbers, booleans, strings, null) or kept as
    a plain string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--param takes KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def parse_partitions(text: str) -> tuple:
    """``--partitions 0,2``: the listed partitions, sorted."""
    try:
        partitions = sorted(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--partitions takes a comma-separated list of ints, got "
                         f"{text!r}") from None
    return tuple(partitions)


def parse_partition_range(text: str) -> tuple:
    """``--partition-range 0-1``: partitions FIRST to LAST, both included."""
    first, sep, last = text.partition("-")
    try:
        first, last = int(first), int(last)
    except ValueError:
        first = last = None
    if not sep or first is None or not 0 <= first <= last:
        raise ValueError(f"--partition-range takes FIRST-LAST with 0 <= FIRST <= LAST, got "
                         f"{text!r}")
    return tuple(range(first, last + 1))


def build_model(config: Config):
    """The prototype learner; its seed is replaced per key by the pool."""
    params = dict(config.params)
    params.pop("seed", None)
    try:
        return MODELS[config.model](**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for model {config.model!r}: {exc}") from None


def learner_class(state: bytes):
    """The learner class that a stored state names (SerializationError if none does)."""
    name = serialization.unpack(state).get("class")
    for cls in (ColumnarRegressor, ColumnarTD):
        if cls.__name__ == name:
            return cls
    raise serialization.SerializationError(f"state entry 'class' is {name!r:.60}, not a "
                                           "streamlearn learner")
