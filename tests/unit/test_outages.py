"""experiments.outages on a small simulator run: each claim of the issue, and determinism."""

from __future__ import annotations

import dataclasses
import functools

import pytest

from experiments import outages
from experiments.outages_cell import Load, OutageCell, OutageRecord, drain_time, run_outage
from experiments.outages_reading import CLEARLY
from experiments.outages_report import render
from transports.call import CallResult, Outcome
from transports.faults import Cut
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
