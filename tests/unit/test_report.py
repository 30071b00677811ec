"""The report: the audit per kind of operation and its drift in parts, the Markdown
document, the run's own folder, the reading on exactly-once's drift, the plot's colours."""

from __future__ import annotations

import csv
import datetime
import json
from pathlib import Path

from experiments.audit import Audit, KindAudit, audit
from experiments.framework.options import RUNS, config_from, run_folder
from experiments.framework.plots import Panel, Plot, Series, colours, shifted
from experiments.framework.results import Results, write_results
from experiments.retries import RetriesConfig, build_parser
from experiments.retries_reading import exactly_once_drift
from experiments.workload import Operation, ops_text
from transports.call import CallResult, Outcome

from .test_retries_experiment import record


def result(outcome: Outcome) -> CallResult:
    return CallResult(None, outcome, None, 1, 0.0, 0.001)  # type: ignore[arg-type]


def sample_audit() -> Audit:
    """A deposit applied twice, a withdrawal applied once of unknown outcome, a deposit
    applied once, and a withdrawal acknowledged but never applied (lost)."""
    ops = [
        Operation("d1", "deposit", 100, 1), Operation("w1", "withdraw", 50, 1),
        Operation("d2", "deposit", 7, 1), Operation("w2", "withdraw", 30, 1),
    ]  # fmt: skip
    outcomes = [Outcome.OK, Outcome.UNKNOWN, Outcome.OK, Outcome.OK]
    applied = {"d1": 2, "w1": 1, "d2": 1}
    ledger_change = 2 * 100 - 50 + 7
    return audit(ops, [result(o) for o in outcomes], applied, 1000 + ledger_change, 1000)


def test_the_drift_splits_into_second_executions_unknown_outcomes_and_losses() -> None:
    a = sample_audit()
    # ok replies account for +100 +7 -30 = 77; the ledger moved 157.
    assert a.money_drift == 80
    assert a.drift_duplicated == 100  # d1's second execution: money created
    assert a.drift_unacknowledged == -50  # w1 applied, its client does not know
    assert a.money_drift - a.drift_duplicated - a.drift_unacknowledged == 30  # w2, lost
    assert a.deposits == KindAudit(ops=2, ok=2, failed=0, unknown=0, duplicated=1, phantom=0,
                                   lost=0, drift=100, drift_duplicated=100)  # fmt: skip
    assert a.withdrawals == KindAudit(ops=2, ok=1, failed=0, unknown=1, duplicated=0, phantom=1,
                                      lost=1, drift=-20, drift_duplicated=0)  # fmt: skip
    assert a.deposits.drift + a.withdrawals.drift == a.money_drift


def test_per_kind_counts_reach_the_json_and_the_csv(tmp_path: Path) -> None:
    rec = record("udp", 0.05, duplicated=0, unknown=0, p99=1.0)
    rec = type(rec)(**{**vars(rec), "audit": sample_audit()})
    results = Results({}, {"argv": "x"}, {"cells": [rec]}, "tables", [rec])
    write_results(tmp_path, "r", results)
    cell = json.loads((tmp_path / "r.json").read_text())["cells"][0]
    assert cell["deposits"]["duplicated"] == 1 and cell["withdrawals"]["lost"] == 1
    assert Audit.from_dict({k: cell[k] for k in Audit.__dataclass_fields__}) == sample_audit()
    with (tmp_path / "r.csv").open() as f:
        row = next(csv.DictReader(f))
    assert (row["deposits_ok"], row["withdrawals_unknown"], row["drift_duplicated"]) == (
        "2", "1", "100",
    )  # fmt: skip


def test_the_markdown_puts_reading_and_legend_before_the_tables(tmp_path: Path) -> None:
    results = Results({}, {"argv": "python -m x"}, {}, "## t\n\n| a |\n|---|\n| 1 |",
                      reading="- it shows", legend="| column | meaning |")  # fmt: skip
    write_results(tmp_path, "r", results)
    text = (tmp_path / "r.md").read_text()
    assert "```" not in text
    order = [text.index(s) for s in ("Command: `python -m x`", "## What this run shows",
                                     "## How to read the tables", "## t")]  # fmt: skip
    assert order == sorted(order)


def test_a_run_writes_to_its_own_folder_unless_told() -> None:
    stamp = datetime.datetime(2026, 12, 1, 18, 5, 9, tzinfo=datetime.UTC)
    assert run_folder(stamp) == Path("results/runs/2026-12-01T18-05-09Z")
    cfg = config_from(RetriesConfig, build_parser().parse_args([]))
    assert cfg.out.parent == RUNS
    cfg = config_from(RetriesConfig, build_parser().parse_args(["--out", "results"]))
    assert cfg.out == Path("results")


def test_the_workload_says_operations_per_cell_and_per_client() -> None:
    assert ops_text(200, 20).startswith("200 operations per cell")
    assert "10 from each of 20 concurrent clients" in ops_text(200, 20)
    assert "2 or 3 from each of 8" in ops_text(20, 8)


def test_exactly_once_drift_is_explained_as_unknown_outcomes_not_money() -> None:
    clean = record("tcp", 0.05, duplicated=0, unknown=5, p99=1.0, semantics="exactly-once")
    a = clean.audit
    parts = {"money_drift": -70, "drift_duplicated": 0, "drift_unacknowledged": -70}
    clean = type(clean)(**{**vars(clean), "audit": type(a)(**{**vars(a), **parts})})
    line = exactly_once_drift([clean])
    assert line is not None and line.startswith("Exactly-once creates no money")
    assert "-70 ledger units" in line
    broken = type(clean)(**{**vars(clean), "audit": type(a)(**{**vars(a), **parts,
                                                                "duplicated": 1})})  # fmt: skip
    line = exactly_once_drift([broken])
    assert line is not None and "breaks its guarantee" in line


def test_a_series_keeps_its_colour_in_every_panel_and_equal_points_are_shifted() -> None:
    first = Panel("a", "x", "y", [Series("tcp", [1], [1]), Series("udp", [1], [1])], dodge=0.1)
    second = Panel("b", "x", "y", [Series("udp", [1], [2]), Series("echo", [1], [2])])
    palette = colours(Plot([[first, second]], (4, 4)))
    assert len(set(palette.values())) == 3  # udp: one colour in both panels
    left, right = (shifted(first, s, rank, 2) for rank, s in enumerate(first.series))
    assert left[0] < 1 < right[0] and abs((1 - left[0]) - (right[0] - 1)) < 1e-12
    assert shifted(second, second.series[0], 0, 2) == [1.0]  # no dodge: points stay put
