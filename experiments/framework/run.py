"""Running cells: one after another or side by side in worker processes, with progress.

Cells share nothing, so running them in parallel changes no count; results
always come back in the cells' order.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

C = TypeVar("C")
R = TypeVar("R")


class Progress:
    """A one-line progress bar on stderr (plain lines when not a terminal)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled
        self.started = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // self.total
        elapsed = time.perf_counter() - self.started
        bar = "#" * filled + "." * (width - filled)
        line = f"[{bar}] {self.done}/{self.total} {elapsed:5.1f}s {label}"
        if self.tty:
            end = "\n" if self.done == self.total else ""
            print(f"\r\x1b[2K{line}", end=end, file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)


def run_cells(
    cells: Sequence[C],
    run: Callable[[C], R],
    *,
    label: Callable[[C], str],
    progress: Progress,
    jobs: int = 1,
    cost: Callable[[C], Any] | None = None,
) -> list[R]:
    """``run`` every cell, ``jobs`` at a time; results in ``cells`` order.

    With ``jobs > 1`` each cell runs in a spawned worker process, so ``run``
    and the cells must pickle (a module-level function, frozen dataclasses);
    cells start in ascending ``cost``, so the slowest can start first.
    """
    if jobs == 1 or len(cells) <= 1:
        results = []
        for cell in cells:
            results.append(run(cell))
            progress.step(label(cell))
        return results
    order = sorted(range(len(cells)), key=lambda i: cost(cells[i]) if cost else 0)
    done: dict[int, R] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(cells)), mp_context=context) as pool:
        futures = {pool.submit(run, cells[i]): i for i in order}
        for future in as_completed(futures):
            index = futures[future]
            done[index] = future.result()
            progress.step(label(cells[index]))
    return [done[i] for i in range(len(cells))]
