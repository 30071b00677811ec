"""Command lines: argparse types, the typed configuration built from them, the environment.

Every experiment declares an ``argparse`` parser whose destinations are the
fields of a frozen config dataclass; ``config_from`` builds that config once
(lists become tuples) and ``parameters`` turns it back into the JSON the
result files record. Library code takes the config, never the namespace.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
C = TypeVar("C")


def csv_list(parse: Callable[[str], T]) -> Callable[[str], list[T]]:
    """An argparse type for comma-separated values, each checked by ``parse``.

    A refused item is reported with ``parse``'s own message (argparse would
    otherwise say only "invalid parse_list value").
    """

    def parse_list(text: str) -> list[T]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        try:
            return [parse(item) for item in items]
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse_list


def choice(options: Sequence[str]) -> Callable[[str], str]:
    """An argparse type accepting one of ``options``."""

    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"{text!r} is not one of {', '.join(options)}")
        return text

    return parse


def probability(text: str) -> float:
    """An argparse type for a probability in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a probability in [0, 1]") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"probability {text} is outside [0, 1]")
    return value


_PER_SECOND = (("ms", 1e3), ("us", 1e6), ("s", 1.0))
MAX_DURATION = 60.0  # seconds: a longer timeout is taken for a typo (50 for 50ms)


def duration(text: str) -> float:
    """An argparse type for a duration in (0, 60] s: ``50ms``, ``1s``, ``500us`` or ``0.05``."""
    number, per_second = text.strip(), 1.0
    for unit, count in _PER_SECOND:
        if number.endswith(unit):
            number, per_second = number[: -len(unit)].strip(), count
            break
    try:
        value = float(number) / per_second  # 50 / 1000 is exactly float("0.05")
    except ValueError:
        raise ValueError(f"{text!r} is not a duration such as 50ms, 1s, 500us or 0.05") from None
    if not 0.0 < value <= MAX_DURATION:  # also refuses NaN and infinities
        raise ValueError(f"duration {text} is outside (0, {MAX_DURATION:g}] seconds")
    return value


def add_output_options(
    parser: argparse.ArgumentParser, name: str, *, quick: str | None, progress: bool = True
) -> None:
    """The options every experiment shares: --out, --name, --quick and --no-progress."""
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--name", default=name, help="base name of the result files")
    if quick is not None:
        parser.add_argument("--quick", action="store_true", help=quick)
    if progress:
        parser.add_argument("--no-progress", action="store_true")


def config_from(cls: type[C], args: argparse.Namespace, **changes: Any) -> C:
    """The frozen config ``cls`` from parsed ``args`` (lists as tuples), with ``changes``.

    The parser's destinations and the config's fields must be the same names:
    a mismatch is a programming error and raises ``TypeError``.
    """
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    given = vars(args)
    if set(given) != set(names):
        raise TypeError(f"{cls.__name__} fields {names} differ from the options {list(given)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    values.update(changes)
    return cls(**values)


def parameters(config: object) -> dict[str, Any]:
    """A config as the ``parameters`` of a result file (paths as strings, tuples as lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def environment() -> dict[str, Any]:
    """What every table states about where it was measured."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "argv": command_line(),
    }


def command_line() -> str:
    """This run's command as a user would type it again: ``python -m MODULE ARGS``.

    ``sys.argv[0]`` alone is the module's file path on this machine when it
    was started with ``-m``.
    """
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = f"python -m {spec.name}" if spec is not None else f"python {sys.argv[0]}"
    return " ".join([head, *sys.argv[1:]])


def error(message: object) -> int:
    """Print ``error: message`` on stderr; the exit status of a refused command line (2)."""
    print(f"error: {message}", file=sys.stderr)
    return 2
