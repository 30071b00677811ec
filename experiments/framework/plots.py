"""The one plotting helper: a figure described as data, drawn with matplotlib.

An experiment describes its figure as a ``Plot``: rows of ``Panel``s, each a
set of ``Series`` (x and y values, a matplotlib format string such as
``"o-"``, ``"s--"`` or ``"k:"``, an optional colour) with titles, labels and
scales. ``save`` draws and writes it; without matplotlib (the optional
``plot`` extra) it writes nothing, says so on stderr, and returns None.

So that every series can be read: a series keeps one colour in every panel
of the figure (its ``key``, by default its label, picks it); each panel's
legend sits outside its axes; a panel with ``dodge`` shifts each series
sideways by a little (in the order the panel lists them), so that equal points
of two series do not hide one another; hollow markers (``hollow``) let a
line drawn on top show through.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DPI = 110
#: How to get matplotlib, for the line that says a plot was skipped.
INSTALL_PLOT = "install the plot extra: pip install '.[plot]' (in this checkout)"
#: Colours given to series without one, in order of first appearance in the figure.
PALETTE = (
    "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
    "tab:pink", "tab:olive", "tab:cyan", "tab:gray",
)  # fmt: skip


@dataclass(frozen=True)
class Series:
    """One line: its legend label, points and style."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    style: str = "o-"
    color: str | None = None
    key: str | None = None  # what picks its colour across panels; default: the label
    hollow: bool = False  # markers drawn as rings, so a line under them shows
    dodge: bool = True  # shifted with the panel's dodge (False: a reference line stays put)

    @property
    def identity(self) -> str:
        return self.key if self.key is not None else self.label


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
    dodge: float = 0.0  # sideways shift between series, as a fraction of the x range


@dataclass(frozen=True)
class Plot:
    """A figure: rows of panels, its size in inches and an optional overall title."""

    rows: Sequence[Sequence[Panel]]
    size: tuple[float, float]
    title: str | None = None


def colours(plot: Plot) -> dict[str, str]:
    """One colour per series identity over the whole figure (given ones kept)."""
    found: dict[str, str] = {}
    free = iter(PALETTE * 4)
    for row in plot.rows:
        for panel in row:
            for s in panel.series:
                if s.identity not in found:
                    found[s.identity] = s.color or next(free)
    return found


def shifted(panel: Panel, series: Series, rank: int, ranks: int) -> list[float]:
    """``series``'s x values moved by its ``rank`` among ``ranks`` for the panel's dodge."""
    xs = [float(x) for x in series.x]
    if not panel.dodge or ranks < 2 or not xs:
        return xs
    offset = (rank - (ranks - 1) / 2) * panel.dodge
    if panel.xlog is not None:  # the same factor everywhere: a shift on the log axis
        return [x * panel.xlog**offset for x in xs]
    every = [float(x) for s in panel.series for x in s.x]
    span = (max(every) - min(every)) or abs(max(every)) or 1.0
    return [x + offset * span for x in xs]


def save(plot: Plot, path: Path) -> Path | None:
    """Draw ``plot`` into ``path`` (PNG); None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"plot skipped: {path} needs matplotlib; {INSTALL_PLOT}", file=sys.stderr)
        return None
    palette = colours(plot)
    columns = max(len(row) for row in plot.rows)
    fig, axes = plt.subplots(
        len(plot.rows), columns, figsize=plot.size, squeeze=False, layout="constrained"
    )
    for r, row in enumerate(plot.rows):
        for c, panel in enumerate(row):
            ax = axes[r][c]
            moved = [s.label for s in panel.series if s.dodge]
            for s in panel.series:
                colour = palette[s.identity]
                xs = (
                    shifted(panel, s, moved.index(s.label), len(moved))
                    if s.dodge
                    else [float(x) for x in s.x]
                )
                face = {"markerfacecolor": "none", "markeredgewidth": 1.5} if s.hollow else {}
                ax.plot(xs, list(s.y), s.style, label=s.label, color=colour, **face)
            ax.set(title=panel.title, xlabel=panel.xlabel, ylabel=panel.ylabel)
            ax.title.set_fontsize(10)
            if panel.xlog is not None:
                ax.set_xscale("log", base=panel.xlog)
            if panel.ylog:
                ax.set_yscale("log")
            if panel.grid:
                ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=panel.legend_size, loc="upper left", bbox_to_anchor=(1.01, 1),
                          borderaxespad=0.0)  # fmt: skip
    for row_axes, row in zip(axes, plot.rows, strict=True):
        for ax in row_axes[len(row) :]:
            ax.set_visible(False)
    if plot.title:
        fig.suptitle(plot.title)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
