"""``python -m experiments.compare A.json B.json``: two result files side by side.

Role: put two runs of an experiment (for example the in-process fault backend
against the kernel one, or two policies) next to each other. Both files have
the shape ``experiments.framework.results.write_results`` writes (a ``cells`` list); cells
are matched on (transport, semantics, loss, timeout). Each metric column reads
``A -> B (delta)``, delta = B - A. Cells present in only one file are listed
below the table. Older files carry no ``timeout`` column: it is read from the
policy (``fixed(timeout=100ms)``), and their transport ``sim`` (the datagram
simulator, now ``sim-udp``) simply has no counterpart in newer files.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

Record = dict[str, Any]
Key = tuple[str, str, float, float | None]  # transport, semantics, loss, timeout (s)
DEFAULT_METRICS = ("ok", "unknown", "duplicated", "phantom", "attempts", "p50_ms", "p99_ms")
LATENCY_SUFFIX = "_ms"


class CompareError(Exception):
    """A result file is missing, not JSON, or not of the expected shape."""


def load(path: Path) -> tuple[dict[str, Any], list[Record]]:
    """The document and its cells; raise ``CompareError`` with the reason."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CompareError(f"cannot read {path}: {err}") from err
    cells = document.get("cells") if isinstance(document, dict) else None
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise CompareError(f"{path}: expected a JSON object with a 'cells' list")
    for cell in cells:
        missing = [k for k in ("transport", "semantics", "loss") if k not in cell]
        if missing:
            raise CompareError(f"{path}: a cell lacks {', '.join(missing)}")
    return document, cells


def key(cell: Record) -> Key:
    return (str(cell["transport"]), str(cell["semantics"]), float(cell["loss"]), timeout(cell))


_POLICY_TIMEOUT = re.compile(r"timeout=([0-9.]+(?:[eE][-+]?[0-9]+)?)(us|ms|s)\b")
_PER_SECOND = {"us": 1e6, "ms": 1e3, "s": 1.0}


def timeout(cell: Record) -> float | None:
    """The cell's attempt timeout: its ``timeout`` column, else read from its policy."""
    value = _number(cell.get("timeout"))
    if value is not None:
        return value
    match = _POLICY_TIMEOUT.search(str(cell.get("policy", "")))
    if match is None:
        return None
    return float(match.group(1)) / _PER_SECOND[match.group(2)]


def timeout_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds * 1000:g}ms" if seconds < 1.0 else f"{seconds:g}s"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def cell_text(metric: str, a: Any, b: Any) -> str:
    """``A -> B (+delta)``; latencies with one decimal, counts as integers."""
    x, y = _number(a), _number(b)
    if x is None or y is None:
        return f"{a} -> {b}"
    digits = 1 if metric.endswith(LATENCY_SUFFIX) else 0
    delta = y - x
    sign = "+" if delta > 0 else ""
    return f"{x:.{digits}f} -> {y:.{digits}f} ({sign}{delta:.{digits}f})"


def compare(
    a: list[Record], b: list[Record], metrics: Sequence[str] = DEFAULT_METRICS
) -> tuple[list[list[Any]], list[Key], list[Key]]:
    """Rows for the matched cells (in A's order) and the keys found in only one file."""
    by_key = {key(cell): cell for cell in b}
    rows = []
    for cell in a:
        other = by_key.get(key(cell))
        if other is not None:
            transport, semantics, loss, seconds = key(cell)
            rows.append(
                [
                    transport,
                    semantics,
                    loss,
                    timeout_text(seconds),
                    *(cell_text(m, cell.get(m), other.get(m)) for m in metrics),
                ]
            )
    keys_a = {key(cell) for cell in a}
    only_a = [key(cell) for cell in a if key(cell) not in by_key]
    only_b = [key(cell) for cell in b if key(cell) not in keys_a]
    return rows, only_a, only_b


def describe(label: str, path: Path, document: dict[str, Any]) -> str:
    """One line per file: what produced it (command, backend, faults, policy, seed)."""
    params = document.get("parameters", {})
    env = document.get("environment", {})
    cells = document.get("cells", [])
    first = cells[0] if cells else {}
    backend = first.get("backend", params.get("fault_backend", "in-process"))
    return (
        f"{label} = {path}: backend {backend}, faults [{first.get('faults', '?')}] "
        f"with loss per row, policy {first.get('policy', '?')}, seed {first.get('seed', '?')}, "
        f"{first.get('ops', '?')} ops x {first.get('clients', '?')} clients; "
        f"command `{env.get('argv', '?')}`"
    )


def render(
    path_a: Path,
    path_b: Path,
    labels: tuple[str, str] = ("A", "B"),
    metrics: Sequence[str] = DEFAULT_METRICS,
    tablefmt: str = "simple",
) -> str:
    doc_a, cells_a = load(path_a)
    doc_b, cells_b = load(path_b)
    rows, only_a, only_b = compare(cells_a, cells_b, metrics)
    headers = ["transport", "semantics", "loss", "timeout", *metrics]
    parts = [
        describe(labels[0], path_a, doc_a),
        describe(labels[1], path_b, doc_b),
        f"Each metric: {labels[0]} -> {labels[1]} (delta = {labels[1]} - {labels[0]}).",
        "",
        tabulate(rows, headers, tablefmt=tablefmt, disable_numparse=True)
        if rows
        else "no cells in common",
    ]
    for label, only in ((labels[0], only_a), (labels[1], only_b)):
        if only:
            listed = ", ".join(
                f"{t} {s} loss={loss:g} timeout={timeout_text(secs)}" for t, s, loss, secs in only
            )
            parts.append(f"only in {label}: {listed}")
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.compare", description=__doc__)
    p.add_argument("a", type=Path, help="first result file (e.g. results/retries.json)")
    p.add_argument("b", type=Path, help="second result file")
    p.add_argument("--labels", default="A,B", help="names for the two files, e.g. inproc,kernel")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="cell fields to compare")
    p.add_argument("--format", default="simple", help="tabulate format, e.g. github for Markdown")
    args = p.parse_args(argv)
    labels = [x.strip() for x in args.labels.split(",")]
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if len(labels) != 2 or not all(labels) or not metrics:
        print("error: --labels needs two names and --metrics at least one", file=sys.stderr)
        return 2
    try:
        print(render(args.a, args.b, (labels[0], labels[1]), metrics, args.format))
    except CompareError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
