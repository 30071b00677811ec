"""Durations in seconds: the checks every retry parameter passes, captions, ``20ms`` parsing."""

from __future__ import annotations

import math
import re
from typing import Final


def _check_positive(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise."""
    # bool is an int subclass; ``timeout=True`` is a bug, not one second.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    result = float(value)
    if not math.isfinite(result) or result <= 0.0:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return result


def _format_duration(seconds: float) -> str:
    """Short human form for captions: 1s, 1.5s, 20ms, 250us."""
    if seconds >= 1.0:
        return f"{seconds:g}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:g}ms"
    return f"{seconds * 1e6:g}us"


_DURATION_RE: Final = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|us)?\s*$")
_UNIT_SECONDS: Final = {"s": 1.0, "ms": 1e-3, "us": 1e-6, None: 1.0}


def _parse_duration(key: str, text: str) -> float:
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"{key}={text!r}: expected a duration such as 0.02, 20ms, 1s or 500us")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
