"""Command lines: argparse types, the typed configuration built from them, the environment.

Every experiment declares an ``argparse`` parser whose destinations are the
fields of a frozen config dataclass; ``config_from`` builds that config once
(lists become tuples) and ``parameters`` turns it back into the JSON the
result files record. Library code takes the config, never the namespace.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from experiments.framework.results import check_writable
from transports.progname import invoked_as

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
    """An argparse type accepting one of ``options`` (a refusal lists them)."""

    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"{text!r} is not one of {', '.join(options)}")
        return text

    return parse


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, if it has one; a description of
    several lines is kept as written (one line is wrapped).

    (argparse's ``ArgumentDefaultsHelpFormatter`` also prints ``default: None``
    and ``default: False`` for flags.)
    """

    def _split_lines(self, text: str, width: int) -> list[str]:
        # Whole words: no "sim-" / "udp" or "exactly-" / "once" across two lines.
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" not in text.strip():
            return super()._fill_text(text, width, indent)
        return "".join(indent + line for line in text.splitlines(keepends=True))

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        shown = default not in (None, False, "", argparse.SUPPRESS) and "%(default)" not in text
        if shown and (action.option_strings or action.nargs in ("?", "*")):
            text += " (default: %(default)s)"
        return text


def experiment_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser every experiment starts from, named as the user ran it, user-facing help."""
    return argparse.ArgumentParser(
        prog=invoked_as(prog), description=description, formatter_class=HelpFormatter
    )


def add_list_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    *,
    choices: Sequence[str] | None = None,
    parse: Callable[[str], Any] | None = None,
    default: str,
    help: str,
) -> None:
    """A comma-separated option: each item one of ``choices`` (listed in the help) or ``parse``d."""
    if (choices is None) == (parse is None):
        raise TypeError("give choices or parse, not both")
    item = choice(choices) if choices is not None else parse
    assert item is not None
    listed = f"; comma-separated, from: {', '.join(choices)}" if choices is not None else ""
    parser.add_argument(flag, type=csv_list(item), default=default, metavar="LIST",
                        help=help + listed)  # fmt: skip


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


#: Where a run writes by default: a folder of its own, so the committed
#: reference in results/ changes only when asked (``--out results``).
RUNS = Path("results") / "runs"


def run_folder(now: datetime.datetime | None = None) -> Path:
    """``results/runs/<UTC time>``, e.g. results/runs/2026-12-01T18-05-09Z."""
    moment = now or datetime.datetime.now(datetime.UTC)
    return RUNS / moment.strftime("%Y-%m-%dT%H-%M-%SZ")


def add_output_options(
    parser: argparse.ArgumentParser, name: str, *, quick: str | None, progress: bool = True
) -> None:
    """The options every experiment shares: --out, --name, --quick and --no-progress."""
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help=f"folder of the result files (default: {RUNS}/<UTC time>; "
        "'--out results' replaces the committed reference results)",
    )
    parser.add_argument("--name", default=name, help="base name of the result files")
    if quick is not None:
        parser.add_argument("--quick", action="store_true", help=quick)
    if progress:
        parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def config_from(cls: type[C], args: argparse.Namespace, **changes: Any) -> C:
    """The frozen config ``cls`` from parsed ``args`` (lists as tuples), with ``changes``.

    The parser's destinations and the config's fields must be the same names:
    a mismatch is a programming error and raises ``TypeError``. An ``out``
    left unset becomes this run's own folder (``run_folder``); ``ValueError`` if it cannot be
    written (checked before the run).
    """
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    given = vars(args)
    if set(given) != set(names):
        raise TypeError(f"{cls.__name__} fields {names} differ from the options {list(given)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    if "out" in values and values["out"] is None:
        values["out"] = run_folder()
    if isinstance(out := values.get("out"), Path):
        check_writable(out)  # a typo in --out costs no run
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
