"""Typed records: frozen dataclasses whose fields are the columns of the result files.

A record class subclasses ``Record`` and is a frozen (usually ``kw_only``)
dataclass. Its JSON object (``to_dict``) lists the fields in declaration
order, with two field markers:

* ``metadata=FLATTEN``: the value's own columns (a dataclass's fields, a
  mapping's items) are inlined, e.g. an ``Audit`` inside a cell's record;
* ``metadata=OMIT_NONE``: the column is left out while the value is None,
  e.g. a prediction that only some cells have.

Nested dataclasses become objects, enums their values, tuples lists. Code
reads records by attribute; ``record["column"]`` looks a column up by the
name the files use (for column-driven readers of older results).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FLATTEN: Mapping[str, bool] = {"flatten": True}
OMIT_NONE: Mapping[str, bool] = {"omit_none": True}


class Record:
    """Mixin for frozen dataclasses that are one row of an experiment's results."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this record, columns in declaration order."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            if f.metadata.get("flatten"):
                inlined = jsonable(value)
                if not isinstance(inlined, dict):
                    raise TypeError(f"{f.name}: only a dataclass or mapping can be flattened")
                out.update(inlined)
            else:
                out[f.name] = jsonable(value)
        return out

    def csv_row(self) -> dict[str, Any]:
        """The scalar columns; an object's scalars as ``name_key`` columns (e.g.
        ``deposits_ok``). Lists and deeper objects stay in the JSON only."""
        row: dict[str, Any] = {}
        for key, value in self.to_dict().items():
            if isinstance(value, dict):
                row.update((f"{key}_{k}", v) for k, v in value.items() if _scalar(v))
            elif _scalar(value):
                row[key] = value
        return row

    def __getitem__(self, column: str) -> Any:
        return self.to_dict()[column]


def _scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def jsonable(value: Any) -> Any:
    """``value`` as JSON types: records, dataclasses, mappings, sequences, enums, paths."""
    if isinstance(value, Record):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
