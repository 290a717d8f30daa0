"""Parsing and validating one event: ``{"key": str?, "x": {name: number}, "y": number|null?}``.

An event is accepted whole or rejected whole with one reason from :data:`REASONS`, so no
learner ever sees part of a bad event.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple

__all__ = ["Event", "Invalid", "parse", "REASONS", "DEFAULT_KEY"]

DEFAULT_KEY = "default"
REASONS = ("malformed_json", "not_object", "bad_key", "missing_x", "bad_x", "bad_feature",
           "bad_target", "learner_error")


class Event(NamedTuple):
    key: str
    x: dict
    y: float | None


class Invalid(NamedTuple):
    reason: str
    detail: str


def _finite(value) -> bool:
    """A JSON number that is a finite float once converted (bools are not numbers here)."""
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is int:
        try:
            return math.isfinite(float(value))
        except OverflowError:
            return False
    return False


def parse(raw: bytes | str) -> Event | Invalid:
    """Decode and validate one JSON line."""
    try:
        data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return Invalid("malformed_json", str(exc)[:200])
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
    for name, value in x.items():
        # the common case first: a finite float (x - x is 0.0 only for finite x)
        if not (type(value) is float and value - value == 0.0) and not _finite(value):
            return Invalid("bad_feature", f"feature {name!r} is {value!r:.60}, not a finite number")
    y = data.get("y")
    if y is not None:
        if not _finite(y):
            return Invalid("bad_target", f"y is {y!r:.60}, not a finite number")
        y = float(y)
    return Event(key, x, y)  # ints stay ints: the learner reads them as floats
