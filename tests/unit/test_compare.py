"""``experiments.compare``: matching cells of two result files and their deltas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.compare import cell_text, compare, main, timeout


def cell(transport: str, semantics: str, loss: float, **metrics: Any) -> dict[str, Any]:
    base = {"ok": 100, "unknown": 0, "duplicated": 0, "phantom": 0, "attempts": 100}
    return {
        "transport": transport,
        "semantics": semantics,
        "loss": loss,
        "faults": f"loss={loss}",
        "policy": "fixed(timeout=50ms)",
        "seed": 1,
        "ops": 100,
        "clients": 4,
        "p50_ms": 0.5,
        "p99_ms": 2.0,
        **base,
        **metrics,
    }


def write(path: Path, cells: list[dict[str, Any]], argv: str) -> Path:
    path.write_text(json.dumps({"parameters": {}, "environment": {"argv": argv}, "cells": cells}))
    return path


def test_cell_text_formats_counts_and_latencies() -> None:
    assert cell_text("ok", 100, 97) == "100 -> 97 (-3)"
    assert cell_text("p99_ms", 2.0, 212.44) == "2.0 -> 212.4 (+210.4)"
    assert cell_text("unknown", 3, 3) == "3 -> 3 (0)"
    assert cell_text("ok", None, 5) == "None -> 5"


def test_compare_matches_on_transport_semantics_loss_timeout() -> None:
    a = [cell("tcp", "maybe", 0.1, ok=90), cell("udp", "maybe", 0.1), cell("udp", "maybe", 0.2)]
    b = [cell("udp", "maybe", 0.1, ok=81), cell("tcp", "maybe", 0.1, ok=99), cell("tcp", "x", 0)]
    b.append(cell("udp", "maybe", 0.2, timeout=1.0))  # another timeout: no match
    rows, only_a, only_b = compare(a, b, ["ok"])
    assert rows == [
        ["tcp", "maybe", 0.1, "50ms", "90 -> 99 (+9)"],
        ["udp", "maybe", 0.1, "50ms", "100 -> 81 (-19)"],
    ]
    assert only_a == [("udp", "maybe", 0.2, 0.05)]
    assert only_b == [("tcp", "x", 0.0, 0.05), ("udp", "maybe", 0.2, 1.0)]


def test_timeout_from_the_column_or_an_older_files_policy() -> None:
    assert timeout({"timeout": 1.0, "policy": "fixed(timeout=50ms)"}) == 1.0
    assert timeout({"policy": "fixed(timeout=100ms)"}) == 0.1
    assert timeout({"policy": "expo(timeout=1.5s, base=5ms, cap=1s)"}) == 1.5
    assert timeout({"policy": "adaptive(RFC 6298 RTO)"}) is None
    assert timeout({}) is None


def test_an_older_file_reads_and_its_sim_cells_have_no_counterpart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before sim-tcp/sim-udp and --timeouts: transport "sim", no timeout column.
    old = [cell(t, "maybe", 0.1) for t in ("tcp", "udp", "sim")]
    new = [cell(t, "maybe", 0.1, timeout=0.05) for t in ("tcp", "udp", "sim-tcp", "sim-udp")]
    a = write(tmp_path / "old.json", old, "python -m experiments.retries")
    b = write(tmp_path / "new.json", new, "python -m experiments.retries")
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    rows = [line.split()[:4] for line in out.splitlines() if line.startswith(("tcp ", "udp "))]
    assert rows == [["tcp", "maybe", "0.1", "50ms"], ["udp", "maybe", "0.1", "50ms"]]
    assert "only in A: sim maybe loss=0.1 timeout=50ms" in out
    assert "only in B: sim-tcp maybe loss=0.1 timeout=50ms, sim-udp maybe" in out


def test_main_prints_side_by_side_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(
        tmp_path / "inproc.json",
        [cell("tcp", "at-least-once", 0.1, unknown=12, p99_ms=50.2)],
        "python -m experiments.retries",
    )
    b = write(
        tmp_path / "kernel.json",
        [cell("tcp", "at-least-once", 0.1, unknown=1, p99_ms=212.9, backend="kernel")],
        "python -m experiments.kernel",
    )
    assert main([str(a), str(b), "--labels", "inproc,kernel"]) == 0
    out = capsys.readouterr().out
    assert "inproc = " in out and "backend in-process" in out
    assert "kernel = " in out and "backend kernel" in out
    assert "12 -> 1 (-11)" in out
    assert "50.2 -> 212.9 (+162.7)" in out
    assert "only in" not in out


def test_main_rejects_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good.json", [cell("udp", "maybe", 0.0)], "x")
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert main([str(good), str(tmp_path / "bad.json")]) == 2
    assert "expected a JSON object with a 'cells' list" in capsys.readouterr().err
    assert main([str(good), str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
