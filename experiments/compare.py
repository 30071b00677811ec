"""``python -m experiments.compare [RUN] [REFERENCE]``: a run against the reference.

Role: put two runs of an experiment next to each other: by default the newest
run folder (results/runs/<time>/, where a run writes unless ``--out`` says
otherwise) against the committed reference results/, file by file (every
NAME.json of the run that has cells and a namesake in the reference); or any
two result files (for example the in-process fault backend against the
kernel one, or two policies). Files have the shape
``experiments.framework.results.write_results`` writes (a ``cells`` list);
cells are matched on (transport, semantics, loss, timeout). Each metric
column reads ``A -> B (delta)``, delta = B - A.

Each matched cell gets a verdict on its counts (``experiments.verdict``): the
simulator is deterministic, so a sim cell is ``same`` or ``differs``; a cell
on real sockets varies from run to run, so a count may move by 4 binomial
standard errors (``within noise``). A last line gives the verdict of the
whole comparison. Cells present in only one file are listed below the
table. Older files carry no ``timeout`` column: it is read from the policy
(``fixed(timeout=100ms)``), and their transport ``sim`` (the datagram
simulator, now ``sim-udp``) simply has no counterpart in newer files.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from experiments.framework.options import RUNS, error, experiment_parser
from experiments.verdict import JUDGED, VERDICT_MEANING, Verdict, cell_verdict, summary

Record = dict[str, Any]
Key = tuple[str, str, float, float | None]  # transport, semantics, loss, timeout (s)
DEFAULT_METRICS = ("ok", "unknown", "duplicated", "phantom", "attempts", "p50_ms", "p99_ms")
LATENCY_SUFFIX = "_ms"
FORMATS = ("simple", "github", "plain", "grid")
#: Parameters that say where and how a run was shown, not what it measured.
PRESENTATION = frozenset({"out", "name", "no_progress", "jobs", "quick"})


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
    """Rows for the matched cells (in A's order), each ending with its verdict, and
    the keys found in only one file."""
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
                    cell_verdict(cell, other).value,
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


LISTED = 8  # unmatched cells listed one by one; more are counted per transport


def unmatched_text(keys: Sequence[Key]) -> str:
    if len(keys) <= LISTED:
        return ", ".join(
            f"{t} {s} loss={loss:g} timeout={timeout_text(secs)}" for t, s, loss, secs in keys
        )
    per = {t: sum(k[0] == t for k in keys) for t in dict.fromkeys(k[0] for k in keys)}
    return f"{len(keys)} cells: " + ", ".join(f"{t} {n}" for t, n in per.items())


def setting_differences(
    doc_a: dict[str, Any], doc_b: dict[str, Any], labels: Sequence[str]
) -> list[str]:
    """A line per parameter that differs between the two runs (they measured different things)."""
    a, b = doc_a.get("parameters", {}), doc_b.get("parameters", {})
    keys = sorted((set(a) | set(b)) - PRESENTATION)
    return [
        f"setting differs: {k} = {a.get(k)!r} ({labels[0]}) vs {b.get(k)!r} ({labels[1]})"
        for k in keys
        if a.get(k) != b.get(k)
    ]


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
    headers = ["transport", "semantics", "loss", "timeout", *metrics, "verdict"]
    parts = [
        describe(labels[0], path_a, doc_a),
        describe(labels[1], path_b, doc_b),
        *(settings := setting_differences(doc_a, doc_b, labels)),
        f"Each metric: {labels[0]} -> {labels[1]} (delta = {labels[1]} - {labels[0]}); "
        f"verdict on the counts {', '.join(JUDGED)}: {VERDICT_MEANING}.",
        "",
        tabulate(rows, headers, tablefmt=tablefmt, disable_numparse=True)
        if rows
        else "no cells in common",
    ]
    for label, only in ((labels[0], only_a), (labels[1], only_b)):
        if only:
            parts.append(f"only in {label}: {unmatched_text(only)}")
    verdict = summary([Verdict(row[-1]) for row in rows], only_a, only_b)
    if settings:  # different runs: the counts need not match
        verdict += " -- but the settings differ (above): the runs measured different things"
    parts.append(verdict)
    return "\n".join(parts)


def pairs(run: Path, reference: Path) -> list[tuple[Path, Path]]:
    """The result files to compare: two files, or each NAME.json of a run folder with
    cells against the reference folder's namesake. ``CompareError`` if there is none."""
    if not run.is_dir() and not reference.is_dir():
        return [(run, reference)]
    if not (run.is_dir() and reference.is_dir()):
        raise CompareError(f"compare two folders or two files, not {run} with {reference}")
    found = [
        (path, reference / path.name)
        for path in sorted(run.glob("*.json"))
        if (reference / path.name).is_file() and _has_cells(path)
    ]
    if not found:
        raise CompareError(f"no result file of {run} has a namesake with cells in {reference}")
    return found


def _has_cells(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()).get("cells"), list)
    except (OSError, ValueError, AttributeError):
        return False


def newest_run(runs: Path = RUNS) -> Path:
    """The newest folder of results/runs (their names are UTC times)."""
    folders = sorted(p for p in runs.glob("*") if p.is_dir()) if runs.is_dir() else []
    if not folders:
        raise CompareError(f"no run in {runs}/ yet: run an experiment first, or name two files")
    return folders[-1]


def main(argv: Sequence[str] | None = None) -> int:
    p = experiment_parser(
        "experiments.compare",
        "Compare a run of an experiment with the reference, cell by cell, with a verdict "
        "per cell and overall: by default the newest run folder in results/runs/ against "
        "results/ (every result file they share), or any two result files, e.g. the "
        "in-process fault backend against the kernel one.",
    )
    p.add_argument(
        "a",
        nargs="?",
        type=Path,
        metavar="RUN",
        help="a run folder or result file (default: the newest folder in results/runs)",
    )
    p.add_argument(
        "b",
        nargs="?",
        type=Path,
        default=Path("results"),
        metavar="REFERENCE",
        help="the reference folder or result file",
    )
    p.add_argument("--labels", help="names for the two sides (default: run,reference for "
                   "folders, A,B for two files)")  # fmt: skip
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="cell fields to show")
    p.add_argument("--format", choices=FORMATS, default="simple",
                   help="table format; github: Markdown")  # fmt: skip
    args = p.parse_args(argv)
    two_files = args.a is not None and not args.a.is_dir() and not args.b.is_dir()
    labels = [
        x.strip() for x in (args.labels or ("A,B" if two_files else "run,reference")).split(",")
    ]
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if len(labels) != 2 or not all(labels) or not metrics:
        return error("--labels needs two names and --metrics at least one")
    try:
        files = pairs(args.a if args.a is not None else newest_run(), args.b)
        for n, (a, b) in enumerate(files):
            heading = f"## {a.name}\n" if len(files) > 1 else ""
            print(("\n" if n else "") + heading + render(a, b, (labels[0], labels[1]), metrics,
                                                       args.format))  # fmt: skip
    except CompareError as err:
        return error(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
