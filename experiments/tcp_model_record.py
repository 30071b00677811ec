"""The typed records of ``python -m experiments.tcp_model`` and how they are read back.

``KernelSample`` is one kernel run of a cell, raw (the whole audit, the wall
time, the kernel's packet counters). ``TcpModelRecord`` is one cell: its
settings, the model's audit (the stream simulator), the optional second
model (the real-socket TCP driver with the in-process fault layer), every
kernel run, and the per-count ``Comparison``s. Its CSV row is flat: per
count the model, the TCP driver, the kernel's mean, min, max and SE, and the
verdict. ``load_cells`` reads the cells of an earlier result file back
(``--kernel-from``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.audit import Audit
from experiments.framework.records import OMIT_NONE, Record
from experiments.tcp_model_stats import COUNTS, Comparison, compare


@dataclass(frozen=True)
class KernelSample:
    """One kernel run of a cell: the audit, its wall time and the kernel's packet counters."""

    audit: Audit
    seconds: float
    packets: Mapping[str, Mapping[str, int]]  # per direction: packets seen, dropped, reset
    loss_tool: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KernelSample:
        return cls(
            audit=Audit.from_dict(data["audit"]),
            seconds=float(data["seconds"]),
            packets={d: dict(c) for d, c in data["packets"].items()},
            loss_tool=data.get("loss_tool"),
        )


@dataclass(frozen=True, kw_only=True)
class TcpModelRecord(Record):
    """One cell: the model, the TCP driver, every kernel run and the comparisons."""

    semantics: str
    timeout: str  # as given, e.g. "100ms"
    timeout_ms: float
    loss: float
    policy: str
    max_attempts: int  # allowed for this cell (maybe: 1)
    ops: int
    clients: int
    seed: int
    model: Audit  # the simulator in stream mode (deterministic)
    model_tcp: Audit | None = field(default=None, metadata=OMIT_NONE)  # real-socket driver
    model_tcp_source: str  # "run", "reused from PATH" or "off"
    kernel: tuple[KernelSample, ...]  # every kernel run, raw
    kernel_source: str  # "measured", "reused from PATH" or "skipped"
    kernel_seconds: float  # wall time of the kernel runs made by this invocation
    comparisons: Mapping[str, Comparison]

    @property
    def key(self) -> tuple[str, float, float]:
        return (self.semantics, self.timeout_ms, self.loss)

    def csv_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "semantics": self.semantics,
            "timeout_ms": self.timeout_ms,
            "loss": self.loss,
            "max_attempts": self.max_attempts,
            "kernel_runs": len(self.kernel),
        }
        for count in COUNTS:
            c = self.comparisons[count]
            spread = c.kernel
            row[f"{count}_model"] = round(c.model, 3)
            row[f"{count}_tcp"] = None if c.model_tcp is None else round(c.model_tcp, 3)
            row[f"{count}_mean"] = None if spread is None else round(spread.mean, 3)
            row[f"{count}_min"] = None if spread is None else spread.min
            row[f"{count}_max"] = None if spread is None else spread.max
            row[f"{count}_se"] = None if spread is None else round(spread.se, 3)
            row[f"{count}_match"] = c.match
        return row


def record(
    settings: Mapping[str, Any],
    model: Audit,
    model_tcp: tuple[Audit | None, str],
    kernel: tuple[Sequence[KernelSample], str, float],
) -> TcpModelRecord:
    """The record of one cell: ``settings`` (the cell's columns), the models and kernel runs.

    ``model_tcp`` is (audit or None, where it came from); ``kernel`` is (runs,
    where they came from, wall time spent on them now).
    """
    tcp_audit, tcp_source = model_tcp
    samples, kernel_source, seconds = kernel
    comparisons = compare(
        settings["semantics"], model, tcp_audit, [sample.audit for sample in samples]
    )
    return TcpModelRecord(
        **settings,
        model=model,
        model_tcp=tcp_audit,
        model_tcp_source=tcp_source,
        kernel=tuple(samples),
        kernel_source=kernel_source,
        kernel_seconds=round(seconds, 3),
        comparisons=comparisons,
    )


@dataclass(frozen=True)
class EarlierCell:
    """What ``--kernel-from`` reuses of one cell of an earlier result file."""

    kernel: tuple[KernelSample, ...]
    model_tcp: Audit | None


@dataclass(frozen=True)
class EarlierResults:
    """An earlier ``tcp_model`` result file: its parameters, environment and cells by key."""

    path: Path
    parameters: Mapping[str, Any]
    environment: Mapping[str, Any]
    cells: Mapping[tuple[str, float, float], EarlierCell]


def load_cells(path: Path) -> EarlierResults:
    """Read the cells of a ``tcp_model`` JSON file; ``ValueError`` if it is not one."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"--kernel-from {path}: {err}") from None
    try:
        cells = {
            (c["semantics"], float(c["timeout_ms"]), float(c["loss"])): EarlierCell(
                kernel=tuple(KernelSample.from_json(k) for k in c["kernel"]),
                model_tcp=Audit.from_dict(c["model_tcp"]) if c.get("model_tcp") else None,
            )
            for c in document["cells"]
        }
        return EarlierResults(path, document["parameters"], document["environment"], cells)
    except (KeyError, TypeError) as err:
        raise ValueError(f"--kernel-from {path}: not a tcp_model result file ({err!r})") from None
