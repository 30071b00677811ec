"""The old import path of the throughput targets, for ``tests/integration/test_workers.py``.

New code imports ``experiments.bench.targets`` (typed rows in and out). Here
``targets`` also takes round-trip rows as mappings, the shape of
results/throughput.json's ``round_trips``; a measurement a mapping lacks counts
as not measured (None, or 0 for counts and rates). Remove once that test
imports ``experiments.bench.targets``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from experiments.bench import targets as _targets
from experiments.bench.inprocess import SimRate
from experiments.bench.measure import RoundTrip
from experiments.bench.targets import Target

__all__ = ["Target", "targets"]

_NOT_MEASURED: dict[str, Any] = {
    "rate": 0.0, "p50_us": 0.0, "p99_us": 0.0, "max_us": 0.0, "vs_echo": None,
    "vs_seed": None, "cpu_us": None, "lost": 0, "bad": 0, "rounds": (),
}  # fmt: skip


def _row(row: RoundTrip | Mapping[str, Any]) -> RoundTrip:
    return row if isinstance(row, RoundTrip) else RoundTrip(**{**_NOT_MEASURED, **row})


def targets(
    rows: Sequence[RoundTrip | Mapping[str, Any]], sim: Sequence[SimRate], **kwargs: Any
) -> list[Target]:
    """``experiments.bench.targets.targets`` on rows given as records or mappings."""
    return _targets.targets([_row(r) for r in rows], sim, **kwargs)
