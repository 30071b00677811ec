"""experiments.outages on a small simulator run: each claim of the issue, and determinism."""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import outages, outages_cell
from experiments.outages_cell import (
    BUDGET_RATIO,
    BUDGET_TOKENS,
    Load,
    OutageCell,
    OutageRecord,
    drain_time,
    run_outage,
)
from experiments.outages_reading import CLEARLY, budget, jitter
from experiments.outages_report import COLUMNS, LEGEND, partition_table, render
from transports.call import CallResult, Outcome
from transports.faults import Cut, FaultSpec, Partition
from transports.semantics import Semantics
from transports.wire import Request

LOAD = Load(
    clients=30,
    interval=0.1,
    partition_at=0.5,
    after=1.0,
    timeout=0.05,
    base=0.05,
    cap=1.0,
    max_attempts=6,
    retention=1.0,
    seed=3,
)
EO, AMO, ALO = Semantics.EXACTLY_ONCE, Semantics.AT_MOST_ONCE, Semantics.AT_LEAST_ONCE


@functools.cache
def run(
    policy: str,
    semantics: Semantics = EO,
    *,
    budget: bool = False,
    cut: Cut = Cut.BOTH,
    length: float = 2.0,
    transport: str = "sim-udp",
) -> OutageRecord:
    return run_outage(LOAD, OutageCell(transport, policy, budget, semantics, cut, length))


def test_steady_load_is_clients_over_interval() -> None:
    record = run("fixed")
    assert record.steady == pytest.approx(LOAD.clients * 0.01 / LOAD.interval, rel=0.2)
    heal = int((LOAD.partition_at + 2.0) / 0.01)
    assert sum(record.load[int(LOAD.partition_at / 0.01) + 1 : heal]) == 0  # nothing gets through


@functools.cache
def peak(policy: str) -> int:
    # 60 clients: with fewer, one window's count is too noisy to compare policies.
    load = dataclasses.replace(LOAD, clients=60)
    cell = OutageCell("sim-udp", policy, False, EO, Cut.BOTH, 2.0)
    return run_outage(load, cell).peak


@pytest.mark.parametrize("no_jitter", ["fixed", "expo"])
def test_no_jitter_peak_after_heal_is_above_full_jitter(no_jitter: str) -> None:
    """Clients cut together retry together without jitter (Brooker 2015)."""
    assert peak(no_jitter) >= CLEARLY * peak("expo-full")


@pytest.mark.parametrize("policy", ["fixed", "expo", "expo-full", "decorrelated", "adaptive"])
def test_budget_caps_amplification_within_its_bound(policy: str) -> None:
    capped, free = run(policy, budget=True), run(policy)
    assert capped.budget_bound is not None
    assert capped.amplification <= capped.budget_bound
    assert capped.amplification < free.amplification
    assert capped.audit.unknown > free.audit.unknown  # the price: it gives up sooner


@pytest.mark.parametrize("policy", ["fixed", "expo", "expo-full"])
def test_budget_holds_amplification_near_what_its_tokens_and_ratio_allow(policy: str) -> None:
    """gRFC A6: each client spends its starting allowance, then 1 retry per 1/ratio replies.

    In the partition every attempt fails, so each client retries until its
    tokens reach half the maximum: max/2 - 1 retries (4 of 10 tokens), no fewer.
    After the heal only replies earn tokens (ratio each), so the retries can
    never exceed max/2 per client plus ratio per reply: the bound.
    """
    capped = run(policy, budget=True)
    ops = capped.audit.ops
    allowance = 1 + LOAD.clients * (BUDGET_TOKENS / 2 - 1) / ops
    assert capped.budget_bound is not None
    assert capped.budget_bound == pytest.approx(
        1 + (LOAD.clients * BUDGET_TOKENS / 2 + BUDGET_RATIO * capped.audit.ok) / ops
    )
    assert allowance <= capped.amplification <= capped.budget_bound


@pytest.mark.parametrize("policy", ["expo", "expo-full"])
def test_budget_under_repeated_partitions_earns_retries_at_its_ratio(
    policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 300 ms cut every 600 ms: once the first cut has spent the allowance, the
    replies between cuts (ratio each) buy the retries of the next cuts, so there
    are more than the allowance and no more than the configured ratio allows
    (a budget earning 5x its ratio breaks the bound)."""
    periodic = FaultSpec(partition=Partition(0.3, LOAD.partition_at, every=0.6))
    monkeypatch.setattr(outages_cell, "fault_spec", lambda _load, _cell: periodic)
    record = run_outage(LOAD, OutageCell("sim-udp", policy, True, EO, Cut.BOTH, 3.0))
    retries = record.audit.attempts - record.audit.ops
    assert retries > LOAD.clients * (BUDGET_TOKENS / 2 - 1)
    assert record.budget_bound is not None
    assert record.amplification <= record.budget_bound


def test_at_most_once_duplicates_once_the_partition_outlasts_retention() -> None:
    short = run("expo", AMO, cut=Cut.REPLIES, length=0.5)
    long = run("expo", AMO, cut=Cut.REPLIES, length=2.0)
    assert short.audit.duplicated == 0
    assert long.audit.duplicated > 0
    assert run("expo", EO, cut=Cut.REPLIES, length=2.0).audit.duplicated == 0
    assert run("expo", EO).audit.duplicated == 0


@pytest.mark.parametrize("semantics", [ALO, AMO, EO])
def test_reply_only_partition_applies_deposits_clients_report_unknown(
    semantics: Semantics,
) -> None:
    record = run("expo", semantics, cut=Cut.REPLIES, length=2.0)
    assert record.audit.unknown > 0
    assert record.audit.phantom == record.audit.unknown  # every unknown one was applied
    assert record.audit.lost == 0
    deposits = record.audit.deposits
    assert deposits is not None and deposits.phantom > 0  # money in that nobody was told of


def test_requests_cut_applies_nothing_the_clients_gave_up_on() -> None:
    record = run("expo", ALO, cut=Cut.REQUESTS, length=2.0)
    assert record.audit.unknown > 0 and record.audit.phantom == 0


def test_tcp_retransmission_delivers_after_the_heal() -> None:
    """On sim-tcp the requests held by the partition arrive after the heal and execute."""
    record = run("fixed", ALO, transport="sim-tcp")
    assert record.audit.duplicated > 0  # retries queued behind the held request, all delivered
    assert record.peak > record.steady


def test_same_seed_same_tables() -> None:
    cell = OutageCell("sim-udp", "expo-full", True, AMO, Cut.BOTH, 1.0)
    first, second = run_outage(LOAD, cell), run_outage(LOAD, cell)
    assert first == second
    assert render([first], {"python": "x", "cpus": 1}) == render(
        [second], {"python": "x", "cpus": 1}
    )


def _outages(cwd: Path, hash_seed: str, seed: int) -> None:
    argv = ["--clients", "20", "--policies", "fixed,expo-full", "--semantics", "at-most-once",
            "--partition", "1s", "--after", "500ms", "--reply-only", "2s", "--jobs", "2",
            "--seed", str(seed), "--out", "out", "--no-progress"]  # fmt: skip
    cwd.mkdir()
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    subprocess.run([sys.executable, "-m", "experiments.outages", *argv], cwd=cwd, env=env,
                   check=True, capture_output=True, timeout=300)  # fmt: skip


@pytest.mark.slow  # two experiment runs in subprocesses
def test_two_runs_same_seed_write_identical_tables(tmp_path: Path) -> None:
    """The simulator's tables depend on the seed alone: not on the process, its hash
    seed (set and dict order of strings) or which worker process ran a cell."""
    _outages(tmp_path / "a", "1", seed=5)
    _outages(tmp_path / "b", "2", seed=5)
    _outages(tmp_path / "c", "1", seed=6)
    first, second, other = ((tmp_path / d / "out" / "outages.md").read_text() for d in "abc")
    assert "| fixed" in first
    assert first == second
    assert (tmp_path / "a/out/outages.csv").read_bytes() == (
        tmp_path / "b/out/outages.csv"
    ).read_bytes()
    # Past the "Command:" line (whose --seed differs), another seed, other tables.
    assert other.split("\n", 3)[3] != first.split("\n", 3)[3]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.split("|")[1:-1]]


def test_tables_show_policy_and_budget_once_per_group_and_the_bound_only_if_budgeted() -> None:
    free = [run("expo", s) for s in (ALO, EO)]
    lines = partition_table(free).splitlines()
    assert "budget bound" not in _cells(lines[0])
    assert _cells(lines[2])[:3] == ["expo", "no", "at-least-once"]
    assert _cells(lines[3])[:3] == ["", "", "exactly-once"]
    lines = partition_table([*free, run("expo", EO, budget=True)]).splitlines()
    assert "budget bound" in _cells(lines[0])
    assert _cells(lines[4])[:3] == ["expo", "yes", "exactly-once"]  # a new group


def test_legend_explains_every_column() -> None:
    names = [
        part.strip() for line in LEGEND.splitlines()[3:] for part in line.split("|")[1].split(" / ")
    ]
    for column in COLUMNS:
        assert column.header in names or column.header.split()[0] in names, column.header


def test_reading_says_whether_each_claim_holds() -> None:
    load = dataclasses.replace(LOAD, clients=60)
    rows = [run_outage(load, OutageCell("sim-udp", p, False, EO, Cut.BOTH, 2.0))
            for p in ("fixed", "expo", "expo-full")]  # fmt: skip
    assert "the claim holds" in (jitter(rows) or "")
    flat = [dataclasses.replace(r, peak=rows[2].peak) for r in rows]  # no spike left
    assert "does not hold" in (jitter(flat) or "")
    capped = [run("expo", budget=True)]
    assert (budget(capped) or "").endswith("within its bound: yes.")
    bound = capped[0].budget_bound
    assert bound is not None
    over = [dataclasses.replace(capped[0], amplification=bound + 0.01)]
    assert (budget(over) or "").endswith("within its bound: NO.")
    assert jitter(capped) is None and budget([run("expo")]) is None


def _results(finished: list[float]) -> list[CallResult]:
    request = Request("r", "bank.deposit", {})
    return [CallResult(request, Outcome.OK, None, 1, f - 0.01, f) for f in finished]


def test_drain_time_is_when_the_last_client_is_back_on_schedule() -> None:
    due = [0.0, 1.0, 2.0, 3.0]
    behind = _results([0.01, 2.6, 2.61, 3.0105])  # ops due at 1 and 2 end late, 3 is on time
    on_time = _results([0.01, 1.01, 2.01, 3.01])
    assert drain_time([on_time, behind], [due, due], 1.5) == pytest.approx(2.61 - 1.5)
    assert drain_time([on_time], [due], 1.5) == 0.0
    # Still behind when its plan ends: drained when its last call ends.
    assert drain_time([_results([0.01, 5.0, 5.1, 5.2])], [due], 1.5) == pytest.approx(3.7)
    assert drain_time([], [], 1.0) == 0.0


def test_reply_only_none_runs_only_the_main_partition() -> None:
    args = outages.build_parser().parse_args(["--reply-only", "none", "--policies", "expo"])
    cells = outages.cells(outages.config(args))
    assert cells and all(c.cut is Cut.BOTH for c in cells)


def test_bad_command_line_is_refused_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert outages.main(["--partition-at", "50ms", "--no-progress"]) == 2
    assert "--partition-at must leave" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        outages.main(["--policies", "sometimes"])
    assert exit_info.value.code == 2
