"""The one plotting helper: a figure described as data, drawn with matplotlib.

An experiment describes its figure as a ``Plot``: rows of ``Panel``s, each a
set of ``Series`` (x and y values, a matplotlib format string such as
``"o-"``, ``"s--"`` or ``"k:"``, an optional colour) with titles, labels and
scales. ``save`` draws and writes it; without matplotlib (the optional
``plot`` extra) it writes nothing, says so on stderr, and returns None.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DPI = 110
#: How to get matplotlib, for the line that says a plot was skipped.
INSTALL_PLOT = "install the plot extra: pip install '.[plot]' (in this checkout)"


@dataclass(frozen=True)
class Series:
    """One line: its legend label, points and style."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    style: str = "o-"
    color: str | None = None


@dataclass(frozen=True)
class Panel:
    """One set of axes."""

    title: str
    xlabel: str
    ylabel: str
    series: Sequence[Series]
    xlog: int | None = None  # log scale of this base on x, linear when None
    ylog: bool = False
    grid: bool = False
    legend_size: int = 8


@dataclass(frozen=True)
class Plot:
    """A figure: rows of panels, its size in inches and an optional overall title."""

    rows: Sequence[Sequence[Panel]]
    size: tuple[float, float]
    title: str | None = None


def save(plot: Plot, path: Path) -> Path | None:
    """Draw ``plot`` into ``path`` (PNG); None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"plot skipped: {path} needs matplotlib; {INSTALL_PLOT}", file=sys.stderr)
        return None
    columns = max(len(row) for row in plot.rows)
    fig, axes = plt.subplots(len(plot.rows), columns, figsize=plot.size, squeeze=False)
    for r, row in enumerate(plot.rows):
        for c, panel in enumerate(row):
            ax = axes[r][c]
            for s in panel.series:
                colour = {} if s.color is None else {"color": s.color}
                ax.plot(list(s.x), list(s.y), s.style, label=s.label, **colour)
            ax.set(title=panel.title, xlabel=panel.xlabel, ylabel=panel.ylabel)
            if panel.xlog is not None:
                ax.set_xscale("log", base=panel.xlog)
            if panel.ylog:
                ax.set_yscale("log")
            if panel.grid:
                ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=panel.legend_size)
    if plot.title:
        fig.suptitle(plot.title)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
