"""Parsing and validating one event: ``{"key": str?, "x": {name: number}, "y": number|null?}``.

An event is accepted whole or rejected whole with one reason from :data:`REASONS`, so no
learner ever sees part of a bad event.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple

from streamlearn._features import MAX_VALUE

__all__ = ["Event", "Invalid", "Limits", "parse", "REASONS", "DEFAULT_KEY"]

DEFAULT_KEY = "default"
REASONS = ("malformed_json", "line_too_long", "not_object", "bad_key", "missing_x", "bad_x",
           "too_many_features", "bad_feature", "out_of_range", "bad_target", "learner_error",
           "learner_corrupt")


class Event(NamedTuple):
    key: str
    x: dict
    y: float | None


class Invalid(NamedTuple):
    reason: str
    detail: str


class Limits(NamedTuple):
    """What one event may hold: bytes of its line, features in its ``x``."""

    max_line_bytes: int = 1 << 20
    max_features: int = 10_000


def _number(value) -> str | None:
    """None for a JSON number that is a finite float within +-MAX_VALUE once converted;
    else the reason it is refused: "bad" (not a number; bools are not numbers here) or
    "out_of_range" (finite in JSON but too large to learn from)."""
    if type(value) is float:
        if not math.isfinite(value):
            return "bad"
    elif type(value) is int:
        try:
            value = float(value)
        except OverflowError:
            return "out_of_range"
    else:
        return "bad"
    return None if abs(value) <= MAX_VALUE else "out_of_range"


def _show(value) -> str:
    """A short, safe rendering of a refused value (a container by its type: its repr could
    be deep or huge)."""
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    return f"{value!r:.60}"


def parse(raw: bytes | str, limits: Limits = Limits()) -> Event | Invalid:
    """Decode and validate one JSON line."""
    if len(raw) > limits.max_line_bytes:
        return Invalid("line_too_long", f"{len(raw)} bytes, more than the limit of "
                       f"{limits.max_line_bytes}")
    try:
        data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return Invalid("malformed_json", str(exc)[:200])
    except RecursionError:
        return Invalid("malformed_json", "nested too deeply")
    if not isinstance(data, dict):
        return Invalid("not_object", f"event is a {type(data).__name__}, not an object")
    key = data.get("key", DEFAULT_KEY)
    if not isinstance(key, str):
        return Invalid("bad_key", f"key is a {type(key).__name__}, not a string")
    if "x" not in data:
        return Invalid("missing_x", "event has no 'x'")
    x = data["x"]
    if not isinstance(x, dict):
        return Invalid("bad_x", f"x is a {type(x).__name__}, not an object")
    if len(x) > limits.max_features:
        return Invalid("too_many_features", f"{len(x)} features, more than the limit of "
                       f"{limits.max_features}")
    for name, value in x.items():
        # the common case first: a float within range (False for NaN)
        if not (type(value) is float and -MAX_VALUE <= value <= MAX_VALUE):
            refused = _number(value)
            if refused == "bad":
                return Invalid("bad_feature", f"feature {name!r:.80} is {_show(value)}, not a "
                               "finite number")
            if refused:
                return Invalid("out_of_range", f"feature {name!r:.80} is {_show(value)}, "
                               f"beyond +-{MAX_VALUE:g}")
    y = data.get("y")
    if y is not None:
        refused = _number(y)
        if refused == "bad":
            return Invalid("bad_target", f"y is {_show(y)}, not a finite number")
        if refused:
            return Invalid("out_of_range", f"y is {_show(y)}, beyond +-{MAX_VALUE:g}")
        y = float(y)
    return Event(key, x, y)  # ints stay ints: the learner reads them as floats
