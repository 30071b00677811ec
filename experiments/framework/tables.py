"""Tables (tabulate) declared as columns, Markdown sections, and percentiles.

A ``Column`` pairs a header with how to read the cell from a record; every
experiment's tables are lists of columns over its typed records, rendered as
Markdown pipe tables (readable on a terminal too). Percentiles are
nearest-rank: tables show p50/p99/max, never a bare mean.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tabulate import tabulate

R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)


@dataclass(frozen=True)
class Column(Generic[R_contra]):
    """One table column: its header and the value it shows for a record.

    A column of a record type serves its subclasses too (``Column`` is
    contravariant): the audit's columns fit every bank-cell record.
    """

    header: str
    value: Callable[[R_contra], Any]


def table(
    records: Sequence[R],
    columns: Sequence[Column[R]],
    *,
    tablefmt: str = "github",
    floatfmt: str | Sequence[str] = ".2f",
    disable_numparse: bool = False,
) -> str:
    """``records`` as a tabulate table, one row each, one cell per column."""
    rows = [[column.value(r) for column in columns] for r in records]
    headers = [column.header for column in columns]
    return tabulate(
        rows, headers, tablefmt=tablefmt, floatfmt=floatfmt, disable_numparse=disable_numparse
    )


def section(title: str, body: str, note: str = "") -> str:
    """A Markdown section: ``## title``, the ``note`` that explains it (if any), the body."""
    return "\n\n".join(part for part in (f"## {title}", note, body) if part)


def legend(intro: str, columns: Sequence[tuple[str, str]]) -> str:
    """A legend in Markdown: a paragraph, then what each column means."""
    return f"{intro}\n\n{tabulate(columns, ('column', 'meaning'), tablefmt='github')}"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def field_columns(cls: type[R], headers: Sequence[str]) -> list[Column[R]]:
    """A column per field of the dataclass ``cls``, in order, headed by ``headers``."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if len(names) != len(headers):
        raise ValueError(f"{cls.__name__} has {len(names)} fields, {len(headers)} headers given")
    return [
        Column(header, operator.attrgetter(name))
        for header, name in zip(headers, names, strict=True)
    ]
