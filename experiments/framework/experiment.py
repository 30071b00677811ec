"""How an experiment is declared and run: ``Experiment`` and ``run_experiment``.

An experiment module declares, as plain module-level functions gathered in
one ``Experiment``: its parser, the frozen config built from it (checked
once; a ``ValueError`` is a refused command line), its cells, how one cell
runs into a typed record, how the records render as tables and plot.
``run_experiment`` does the rest the same way for every experiment: parse,
build the config, run the cells with progress (in worker processes when
``jobs`` says so), print the tables and the reading, write JSON/CSV/Markdown/PNG (the Markdown
with the reading and the legend of the columns first), and exit 0,
2 on a refused command line or an environment error, or ``status``'s verdict.
``experiments.retries`` is the template.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from experiments.framework.options import environment, error, parameters
from experiments.framework.plots import Plot
from experiments.framework.records import Record
from experiments.framework.results import Results, write_results
from experiments.framework.run import Progress, run_cells


class Outputs(Protocol):
    """What ``run_experiment`` reads from every config."""

    @property
    def out(self) -> Path: ...
    @property
    def name(self) -> str: ...
    @property
    def no_progress(self) -> bool: ...


ConfigT = TypeVar("ConfigT", bound=Outputs)
CellT = TypeVar("CellT")
RecordT = TypeVar("RecordT", bound=Record)
Environment = Mapping[str, Any]


def _one_job(_config: Any) -> int:
    return 1


@dataclass(frozen=True)
class Experiment(Generic[ConfigT, CellT, RecordT]):
    """One experiment: its command line, cells, run, tables and plot."""

    parser: Callable[[], argparse.ArgumentParser]
    config: Callable[[argparse.Namespace], ConfigT]  # ValueError: refused command line
    cells: Callable[[ConfigT], Sequence[CellT]]  # ValueError: refused command line
    run: Callable[[ConfigT, CellT], RecordT]  # module-level: may run in a worker process
    label: Callable[[CellT], str]  # the progress line of a finished cell
    render: Callable[[Sequence[RecordT], Environment], str]  # the tables, Markdown
    plot: Callable[[str, Sequence[RecordT]], Plot] | None = None
    jobs: Callable[[ConfigT], int] = _one_job  # cells at once
    cost: Callable[[CellT], Any] | None = None  # with jobs > 1: cheapest-first start order
    environment: Callable[[Sequence[RecordT]], Environment] | None = None  # extra entries
    status: Callable[[Sequence[RecordT]], int] | None = None  # exit status; default 0
    errors: tuple[type[Exception], ...] = ()  # raised by a run: print, exit 2
    reading: Callable[[Sequence[RecordT]], str] | None = None  # what the run shows, Markdown
    legend: str = ""  # Markdown: what each column means, with its unit


def run_experiment(
    experiment: Experiment[ConfigT, CellT, RecordT], argv: Sequence[str] | None = None
) -> int:
    """Parse ``argv``, build the config and ``execute`` it."""
    args = experiment.parser().parse_args(argv)
    try:
        config = experiment.config(args)
    except ValueError as err:
        return error(err)
    return execute(experiment, config)


def execute(experiment: Experiment[ConfigT, CellT, RecordT], config: ConfigT) -> int:
    """Run every cell of ``config``, print the tables, write the results."""
    try:
        cells = experiment.cells(config)
    except ValueError as err:
        return error(err)
    progress = Progress(len(cells), enabled=not config.no_progress)
    try:
        records = run_cells(
            cells,
            functools.partial(experiment.run, config),
            label=experiment.label,
            progress=progress,
            jobs=experiment.jobs(config),
            cost=experiment.cost,
        )
    except experiment.errors as err:
        return error(err)
    env = environment()
    if experiment.environment is not None:
        env.update(experiment.environment(records))
    text = experiment.render(records, env)
    reading = experiment.reading(records) if experiment.reading is not None else ""
    print(text)
    if reading:
        print(f"\n## What this run shows\n\n{reading}")
    plot = experiment.plot(config.name, records) if experiment.plot is not None else None
    results = Results(parameters(config), env, {"cells": records}, text, records, plot=plot,
                      reading=reading, legend=experiment.legend)  # fmt: skip
    written = write_results(config.out, config.name, results)
    print("\nwrote " + ", ".join(str(p) for p in written))
    if experiment.legend:
        print(f"what each column means: {config.out / (config.name + '.md')}")
    return experiment.status(records) if experiment.status is not None else 0
