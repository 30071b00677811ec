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
    # tcp: 9 of 100 is within 4 standard errors (real sockets vary); udp: 19 is not.
    assert rows == [
        ["tcp", "maybe", 0.1, "50ms", "90 -> 99 (+9)", "within noise"],
        ["udp", "maybe", 0.1, "50ms", "100 -> 81 (-19)", "differs"],
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


def test_a_run_folder_is_compared_with_the_reference_file_by_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, reference = tmp_path / "runs" / "2026-12-01T18-00-00Z", tmp_path / "results"
    run.mkdir(parents=True)
    reference.mkdir()
    sim = [cell("sim-udp", "at-least-once", 0.3, duplicated=65)]
    write(reference / "retries.json", sim, "python -m experiments.retries")
    write(run / "retries.json", sim, "python -m experiments.retries")
    (run / "notes.json").write_text("{}")  # no cells: not a result file to compare
    assert main([str(run), str(reference)]) == 0
    out = capsys.readouterr().out
    assert "run = " in out and "reference = " in out
    assert out.rstrip().endswith(
        "VERDICT: MATCHES: 1 of 1 cells the same, 0 within run-to-run noise"
    )
    # A deterministic (sim) cell that moves by one count is a change, not noise.
    write(run / "retries.json", [cell("sim-udp", "at-least-once", 0.3, duplicated=66)], "x")
    assert main([str(run), str(reference)]) == 0
    out = capsys.readouterr().out
    assert "65 -> 66 (+1)" not in out  # duplicated is shown A -> B: run first
    assert "66 -> 65 (-1)" in out and "differs" in out
    assert "VERDICT: DIFFERS: 1 of 1 cells differ beyond run-to-run noise" in out


def test_without_arguments_the_newest_run_is_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    assert "no run in results/runs/ yet" in capsys.readouterr().err
    for stamp, ok in (("2026-12-01T09-00-00Z", 50), ("2026-12-01T10-00-00Z", 98)):
        folder = tmp_path / "results" / "runs" / stamp
        folder.mkdir(parents=True)
        write(folder / "retries.json", [cell("udp", "maybe", 0.1, ok=ok)], "x")
    write(tmp_path / "results" / "retries.json", [cell("udp", "maybe", 0.1, ok=100)], "x")
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "2026-12-01T10-00-00Z" in out and "98 -> 100 (+2)" in out
    assert "within noise" in out and "VERDICT: MATCHES: 0 of 1 cells the same, 1 within" in out


def test_runs_with_different_settings_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path, ops in ((a, 40), (b, 200)):
        document = {"parameters": {"ops": ops, "out": str(path)}, "environment": {}, "cells": []}
        path.write_text(json.dumps(document))
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "setting differs: ops = 40 (A) vs 200 (B)" in out and "out =" not in out
    assert "VERDICT: nothing to compare" in out and "the settings differ" in out
