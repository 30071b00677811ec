"""experiments.tcp_model: the statistics, the verdicts, --kernel-from re-rendering, a smoke run.

No kernel here: the command line runs with ``--skip-kernel`` (the simulator
only), and the kernel runs that ``--kernel-from`` reuses are written by the
test into a result file the command made.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

from experiments.audit import Audit
from experiments.tcp_model import main
from experiments.tcp_model_stats import (
    COUNTS,
    Spread,
    compare,
    miss,
    structural,
    tally,
    verdict,
)

TINY = ["--ops", "24", "--clients", "3", "--loss", "0.2", "--no-progress"]


def audit(**changes: float) -> Audit:
    base = Audit(ops=24, ok=20, failed=0, unknown=4, executions=30, duplicated=3, phantom=4,
                 phantom_failed=0, lost=0, money_drift=0, attempts=30, p50_ms=0.5,
                 p99_ms=400.0, max_ms=500.0)  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# -- statistics -----------------------------------------------------------------


def test_spread_mean_range_and_standard_error() -> None:
    s = Spread.of([1, 2, 3, 4, 5])
    assert (s.n, s.mean, s.min, s.max) == (5, 3.0, 1.0, 5.0)
    assert s.se == pytest.approx(math.sqrt(2.5 / 5))  # sample variance 2.5
    assert (s.low, s.high) == pytest.approx((1 - s.se, 5 + s.se))


def test_spread_of_one_run_has_no_standard_error_and_of_none_is_refused() -> None:
    assert Spread.of([7]) == Spread(1, 7.0, 7.0, 7.0, 0.0)
    with pytest.raises(ValueError):
        Spread.of([])


def test_verdict_is_the_band_min_minus_se_to_max_plus_se_inclusive() -> None:
    s = Spread(4, 10.0, 8.0, 12.0, 1.0)  # band [7, 13]
    assert verdict(10, s) and verdict(7, s) and verdict(13, s)
    assert not verdict(6.99, s) and not verdict(13.01, s)
    assert verdict(None, s) is None and verdict(10, None) is None


def test_miss_is_the_signed_distance_from_the_band() -> None:
    s = Spread(4, 10.0, 8.0, 12.0, 1.0)
    assert miss(10, s) == 0.0
    assert miss(15, s) == pytest.approx(2.0)
    assert miss(5, s) == pytest.approx(-2.0)
    assert miss(5, None) is None


def test_identical_runs_accept_only_their_value() -> None:
    s = Spread.of([3, 3, 3])
    assert verdict(3, s) and not verdict(4, s)


def test_structural_counts_are_the_ones_the_semantics_fixes() -> None:
    assert structural("maybe", "attempts") and structural("maybe", "duplicated")
    assert structural("exactly-once", "duplicated") and structural("at-most-once", "duplicated")
    assert not structural("at-least-once", "duplicated")
    assert not structural("maybe", "unknown")


def test_compare_judges_every_count_and_tally_leaves_fixed_ones_out() -> None:
    kernel = [audit(unknown=3), audit(unknown=5), audit(unknown=4, attempts=31)]
    out = compare("exactly-once", audit(unknown=9), audit(), kernel)
    assert list(out) == list(COUNTS)
    assert out["unknown"].match is False and out["unknown"].miss is not None
    assert out["unknown"].miss > 0
    assert out["unknown"].match_tcp is True
    assert out["attempts"].match is True
    assert out["duplicated"].structural
    assert str(tally(list(out.values()))) == "5/6"  # 7 counts, dup fixed, unknown missed
    assert str(tally(list(out.values()), tcp=True)) == "6/6"


def test_without_kernel_runs_nothing_is_judged() -> None:
    out = compare("maybe", audit(), None, [])
    assert all(c.match is None and c.kernel is None for c in out.values())
    assert str(tally(list(out.values()))) == "-"


# -- the command line -------------------------------------------------------------


def run_json(tmp_path: Path, *args: str, name: str = "tm") -> dict[str, Any]:
    assert main([*TINY, "--out", str(tmp_path), "--name", name, *args]) == 0
    data: dict[str, Any] = json.loads((tmp_path / f"{name}.json").read_text())
    return data


def test_skip_kernel_smoke_run_writes_every_file_and_is_deterministic(tmp_path: Path) -> None:
    first = run_json(tmp_path, "--skip-kernel", "--timeouts", "100ms,1.5s")
    again = run_json(tmp_path, "--skip-kernel", "--timeouts", "100ms,1.5s", name="again")
    assert len(first["cells"]) == 2 * 3  # timeouts x the three default semantics
    assert [c["model"] for c in first["cells"]] == [c["model"] for c in again["cells"]]
    cell = first["cells"][0]
    assert cell["kernel"] == [] and cell["kernel_source"] == "skipped"
    assert "model_tcp" not in cell
    markdown = (tmp_path / "tm.md").read_text()
    assert "| timeout" in markdown and "**Legend.**" in markdown
    assert "python -m" in markdown or "Command:" in markdown
    assert (tmp_path / "tm.csv").read_text().startswith("semantics,timeout_ms,loss")


def kernel_run(model: dict[str, Any], **changes: float) -> dict[str, Any]:
    return {
        "audit": {**model, **changes},
        "seconds": 1.5,
        "packets": {
            "a->b": {"packets": 100, "dropped": 20, "reset": 0},
            "b->a": {"packets": 90, "dropped": 18, "reset": 0},
        },
        "loss_tool": "nft",
    }


def test_kernel_from_rerenders_with_the_kept_kernel_runs(tmp_path: Path) -> None:
    earlier = run_json(tmp_path, "--skip-kernel", "--semantics", "at-least-once",
                       "--timeouts", "1.5s", name="earlier")  # fmt: skip
    cell = earlier["cells"][0]
    model = cell["model"]
    # Kernel runs around the model, except unknown, which sits far above it.
    cell["kernel"] = [
        kernel_run(model, unknown=model["unknown"] + 50 + i, ok=model["ok"] - i) for i in range(3)
    ]
    cell["model_tcp"] = model
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(earlier))
    again = run_json(tmp_path, "--semantics", "at-least-once", "--timeouts", "1.5s",
                     "--kernel-from", str(path), name="again")  # fmt: skip
    out = again["cells"][0]
    assert out["kernel"] == cell["kernel"]  # every raw run kept
    assert out["kernel_source"] == f"reused from {path}"
    assert out["model"] == model  # recomputed, and deterministic
    assert out["model_tcp"] == model and out["model_tcp_source"] == f"reused from {path}"
    comparisons = out["comparisons"]
    assert comparisons["unknown"]["match"] is False
    assert comparisons["unknown"]["kernel"]["mean"] == model["unknown"] + 51
    assert comparisons["ok"]["match"] is True
    assert comparisons["attempts"]["match"] is True
    assert again["environment"]["kernel_from"] == str(path)
    markdown = (tmp_path / "again.md").read_text()
    assert "**miss**" in markdown and "Misses: by how much" in markdown
    assert "runs measured by" in markdown


def test_kernel_from_refuses_another_workload_or_a_missing_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_json(tmp_path, "--skip-kernel", "--semantics", "maybe", "--timeouts", "1.5s",
             name="earlier")  # fmt: skip
    path = str(tmp_path / "earlier.json")
    base = [*TINY, "--out", str(tmp_path), "--kernel-from", path, "--timeouts", "1.5s"]
    assert main([*base, "--semantics", "maybe", "--ops", "30"]) == 2
    assert "not the same workload" in capsys.readouterr().err
    assert main([*base, "--semantics", "exactly-once"]) == 2
    assert "no cell exactly-once" in capsys.readouterr().err


def test_refused_command_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path)]
    assert main([*TINY, *out, "--skip-kernel", "--kernel-from", "x.json"]) == 2
    assert main([*TINY, *out, "--tcp-driver", "reuse", "--skip-kernel"]) == 2
    assert main([*TINY, *out, "--skip-kernel", "--kernel-runs", "0"]) == 2
    assert main([*TINY, *out, "--kernel-from", str(tmp_path / "none.json")]) == 2
    assert capsys.readouterr().err.count("error:") == 4
    with pytest.raises(SystemExit):
        main([*TINY, *out, "--timeouts", "soon"])


def test_a_rerender_of_a_rerender_keeps_the_command_that_measured(tmp_path: Path) -> None:
    earlier = run_json(tmp_path, "--skip-kernel", "--semantics", "maybe", "--timeouts", "1.5s",
                       name="first")  # fmt: skip
    earlier["cells"][0]["kernel"] = [kernel_run(earlier["cells"][0]["model"])]
    earlier["environment"].update(argv="python -m experiments.tcp_model --measured",
                                  kernel_wall_seconds=12.5)  # fmt: skip
    (tmp_path / "first.json").write_text(json.dumps(earlier))
    common = ["--semantics", "maybe", "--timeouts", "1.5s"]
    run_json(tmp_path, *common, "--kernel-from", str(tmp_path / "first.json"), name="second")
    third = run_json(tmp_path, *common, "--kernel-from", str(tmp_path / "second.json"),
                     name="third")  # fmt: skip
    assert third["environment"]["kernel_command"] == "python -m experiments.tcp_model --measured"
    assert third["environment"]["kernel_wall_seconds"] == 12.5
    assert len(third["cells"][0]["kernel"]) == 1
