"""The one writer of result files: JSON, CSV, Markdown and PNG under ``out/``.

``NAME.json`` holds the parameters (the run's config), the environment and the
experiment's sections (for a cell experiment, ``cells``: one record each);
``NAME.csv`` the scalar columns of the table rows (the union of their
columns, in first-seen order, so records of different kinds can share a
file); ``NAME.md`` a Markdown document: the command that reproduces the run, the
reading of the run and the legend of the columns (when the experiment has
them), then the tables;
``NAME.png`` the plot, when there is one and matplotlib is installed.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.framework.plots import Plot, save
from experiments.framework.records import Record, jsonable


@dataclass(frozen=True)
class Results:
    """Everything one run writes."""

    parameters: Mapping[str, Any]
    environment: Mapping[str, Any]
    sections: Mapping[str, Any]  # the JSON's further keys, e.g. {"cells": records}
    text: str  # the tables, Markdown
    rows: Sequence[Record] = ()  # the CSV's rows; none: no CSV
    title: str | None = None  # the Markdown heading; default: the file name
    plot: Plot | None = None
    reading: str = ""  # Markdown: what the run shows, from its own numbers
    legend: str = ""  # Markdown: what each column means, with its unit


def check_writable(out: Path) -> None:
    """``ValueError`` unless ``out`` is, or can be made, a folder we may write in.

    Checked before a run, so that a typo in ``--out`` costs no run (and no
    traceback at its end). Nothing is created yet: an interrupted run leaves
    no empty folder behind.
    """
    folder = out.absolute()
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"--out {out}: {folder} is not a folder")
    try:  # a real try, not os.access: root passes access() where mkdir still fails
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=folder))
    except OSError as err:
        raise ValueError(f"--out {out}: cannot write in {folder} ({err.strerror})") from None


def write_results(out: Path, name: str, results: Results) -> list[Path]:
    """Write ``results`` as ``out/name.*``; the paths written, in that order."""
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "parameters": jsonable(results.parameters),
        "environment": jsonable(results.environment),
        **{key: jsonable(value) for key, value in results.sections.items()},
    }
    written = [out / f"{name}.json"]
    written[0].write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    if results.rows:
        written.append(_write_csv(out / f"{name}.csv", results.rows))
    markdown = out / f"{name}.md"
    written.append(markdown)
    markdown.write_text(document_text(name, results), encoding="utf-8")
    if results.plot is not None and (png := save(results.plot, out / f"{name}.png")) is not None:
        written.append(png)
    return written


def document_text(name: str, results: Results) -> str:
    """The Markdown document: title, command, reading, legend, tables."""
    command = results.environment.get("argv", "?")
    parts = [f"# {results.title or name}", f"Command: `{command}`"]
    if results.reading:
        parts.append(f"## What this run shows\n\n{results.reading}")
    if results.legend:
        parts.append(f"## How to read the tables\n\n{results.legend}")
    parts.append(results.text)
    return "\n\n".join(parts) + "\n"


def _write_csv(path: Path, rows: Sequence[Record]) -> Path:
    flat = [r.csv_row() for r in rows]
    fields = list(dict.fromkeys(k for r in flat for k in r))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)
    return path
