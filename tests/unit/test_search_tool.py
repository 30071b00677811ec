"""python -m experiments.search in the simulator: the command line, the budget, the seed,
and that every answer is a 1-minimal counterexample (no sockets)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import strategies as st

from experiments.search.bank import BankTemplate, Model, run_in_sim
from experiments.search.cli import main
from experiments.search.config import SearchConfig
from experiments.search.finder import find
from experiments.search.replay import Replay
from experiments.search.space import SearchSpace, one_minimal, without_each_fault
from experiments.search.tool import render_replay, run_search
from transports.schedule import FaultSchedule
from transports.semantics import Semantics

CRASHY = ("drop", "dup", "crash-before", "crash-after")


@pytest.fixture(scope="module")
def bank() -> Iterator[BankTemplate]:
    with BankTemplate.temporary(2) as template:
        yield template


def search(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_search_prints_schedule_reason_and_replay_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = search(capsys, "--semantics", "at-least-once", "--faults", "drop")
    assert status == 0
    assert "counterexample after" in out and "  client0 reply: #0 drop\n" in out
    assert "deposit c0-0 (1 into account 1) was applied 2 times" in out
    assert "its client was told ok" in out and "ledger row 2: c0-0 deposit 1" in out
    assert (
        "python -m experiments.search replay 'client0 reply: #0 drop' --semantics at-least-once "
        "--model datagram --timeout 150ms --attempts 20 --ops 3 --clients 1 "
        "--property no-duplicate --seed 1"
    ) in out


def test_no_counterexample_is_an_answer_that_says_what_was_searched(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = search(capsys, "--semantics", "exactly-once", "--examples", "40")
    assert status == 0
    assert "no counterexample in 40 examples (40 runs): no-duplicate held" in out
    assert "semantics exactly-once" in out and "budget 40 examples, seed 1" in out
    assert "drop, dup, delay 225ms, delay 525ms, delay 30ms" in out  # delays scale with the timeout
    assert "crashes before and after apply" in out


def test_the_same_seed_gives_the_same_answer(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("--semantics", "at-most-once", "--faults", "drop,dup,crash-before", "--seed", "7")
    first = search(capsys, *argv)
    assert first == search(capsys, *argv)
    assert "client0 reply: #0 drop; crash before request #1" in first[1]


def test_the_seed_chooses_the_examples() -> None:
    space = SearchSpace(max_clients=1)
    tried: dict[int | None, list[FaultSchedule]] = {}
    for seed in (1, 2, None):
        seen = tried[seed] = []

        def check(_clients: int, schedule: FaultSchedule, seen: list[FaultSchedule] = seen) -> None:
            seen.append(schedule)

        find(check, space.schedules(), st.just(1), max_examples=30, seed_value=seed)
    assert len(tried[1]) == 30
    assert tried[1] != tried[2] and tried[1] != tried[None]
    again: list[FaultSchedule] = []
    find(
        lambda _c, s: again.append(s), space.schedules(), st.just(1), max_examples=30, seed_value=1
    )
    assert again == tried[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--semantics", "twice"], "invalid choice: 'twice'"),
        (["--model", "carrier-pigeon"], "invalid choice: 'carrier-pigeon'"),
        (["--faults", "drop,teleport"], "'teleport' is not one of drop, dup, delay"),
        (["--directions", "sideways"], "is not one of reply, request"),
        (["--property", "fast"], "invalid choice: 'fast'"),
        (["--timeout", "0"], "argument --timeout: invalid duration value: '0'"),
    ],
)
def test_bad_choices_are_refused_by_the_parser(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--examples", "0"], "--examples must be in 1..100000"),
        (["--max-faults", "0"], "--max-faults must be in 1..20"),
        (["--clients", "9"], "--clients must be in 1..4"),
        (["--ops", "0"], "ops per client must be in 1..100"),
        (["--attempts", "0"], "max attempts must be in 1..100"),
        (["--policy", "fixed:timeout=1s"], "give the timeout with --timeout"),
        (["--policy", "sometimes"], "unknown retry policy 'sometimes'"),
        (["replay", "client0 sideways: #0 drop"], "cannot parse schedule item"),
        (["replay", "client1 reply: #0 drop"], "replay it with --clients 2"),
        (["replay", "no faults", "--on", "carrier"], "is not one of sim-udp"),
        (["replay", "client0 reply: #99999999999 drop"], "message index 99999999999 is too"),
        (["replay", "client99999999 reply: #0 drop"], "client 99999999 is too large"),
        (["replay", "client0 reply: #0 delay 61s"], "a delay must be in (0, 60] s"),
        (["reference", "--examples", "0"], "--examples must be in 1..100000"),
        (["--timeout", "30s", "--faults", "delay"], "a delay must be in (0, 60] s, got 105.0"),
    ],
)
def test_bad_values_get_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    try:
        status = main(argv)
    except SystemExit as exit_info:
        status = int(exit_info.code or 0)
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("semantics", "faults", "model", "expected"),
    [
        (Semantics.MAYBE, CRASHY, Model.DATAGRAM, "client0 request: #0 dup"),
        (Semantics.AT_LEAST_ONCE, CRASHY, Model.DATAGRAM, "client0 reply: #0 drop"),
        (Semantics.AT_MOST_ONCE, CRASHY, Model.DATAGRAM, "crash after request #0"),
        (
            Semantics.AT_MOST_ONCE,
            ("drop", "dup", "crash-before"),
            Model.DATAGRAM,
            "client0 reply: #0 drop; crash before request #1",
        ),
        (Semantics.AT_LEAST_ONCE, ("drop",), Model.TCP, "client0 reply: #0 drop"),
    ],
)
def test_every_answer_is_one_minimal(
    bank: BankTemplate,
    semantics: Semantics,
    faults: tuple[str, ...],
    model: Model,
    expected: str,
) -> None:
    config = SearchConfig(semantics, model=model, faults=faults)
    answer = run_search(config, bank)
    assert answer.schedule is not None and answer.clients is not None
    assert str(answer.schedule) == expected

    def holds(schedule: FaultSchedule) -> bool:
        run = run_in_sim(bank, config.workload(), model, schedule, answer.clients or 1, seed=1)
        return config.prop.holds(run)

    assert not holds(answer.schedule)
    smaller = list(without_each_fault(answer.schedule))
    assert len(smaller) == answer.schedule.faults
    assert all(holds(s) for s in smaller)  # removing any one fault repairs it


def test_exactly_once_has_no_counterexample(bank: BankTemplate) -> None:
    answer = run_search(SearchConfig(Semantics.EXACTLY_ONCE, faults=CRASHY, examples=200), bank)
    assert answer.schedule is None and answer.runs == 200


def test_tcp_model_duplicates_without_losing_a_reply_only_below_the_rto(
    bank: BankTemplate,
) -> None:
    # Requests only: under the TCP model a dropped request arrives after the
    # RTO (~204 ms), behind which the 150 ms retry waits: both execute.
    below = SearchConfig(model=Model.TCP, faults=("drop",), directions=("request",))
    answer = run_search(below, bank)
    assert str(answer.schedule) == "client0 request: #0 drop"
    assert answer.run is not None and answer.run.links["client0/request"]["retransmitted"] == 1
    # The same schedule over datagrams: the drop is gone, the retry is the one copy.
    datagram = run_in_sim(bank, below.workload(), Model.DATAGRAM, answer.schedule, 1)
    assert datagram.audit.duplicated == 0
    above = SearchConfig(model=Model.TCP, faults=("drop",), timeout=1.0, examples=150)
    assert run_search(above, bank).schedule is None


def test_one_minimal_removes_faults_the_violation_does_not_need(bank: BankTemplate) -> None:
    config = SearchConfig(faults=("drop", "reorder"))
    padded = FaultSchedule.parse("client0 reply: #0 drop; client0 request: #2 delay 30ms")

    def fails(schedule: FaultSchedule) -> bool:
        run = run_in_sim(bank, config.workload(), Model.DATAGRAM, schedule, 1)
        return not config.prop.holds(run)

    assert fails(padded)
    assert str(one_minimal(padded, fails)) == "client0 reply: #0 drop"


def test_the_timeline_shows_what_happened(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = search(capsys, "--model", "tcp", "--faults", "drop", "--directions", "request")
    assert "  client0 request: #0 drop\n" in out
    assert "no message was lost: TCP retransmitted the dropped message" in out
    timeline = out[out.index("what happened") : out.index("replay it")]
    assert (
        "client0/request #0: request c0-0 attempt 1, drop: delivered at 204.4 ms "
        "(retransmitted by TCP after its RTO)"
    ) in timeline
    assert (
        "150.0 ms  client0/request #1: request c0-0 attempt 2, delivered at 204.4 ms "
        "(held behind an earlier message)"
    ) in timeline
    assert "server executes c0-0 attempt 2: ledger row 2 written" in timeline
    _, out, _ = search(capsys, "--semantics", "at-most-once", "--faults", "drop,crash-before")
    assert (
        "server arrival #1: request c0-0 attempt 2, admitted (the server crashed and restarted "
        "as it arrived: its reply cache is gone)"
    ) in out


def test_the_readme_quotes_the_search_as_it_runs(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    command = (
        "$ python -m experiments.search --semantics at-most-once --faults drop,dup,crash-before"
    )
    quoted = readme[readme.index(command) + len(command) + 1 :]
    quoted = quoted[: quoted.index("```")]
    _, out, _ = search(capsys, "--semantics", "at-most-once", "--faults", "drop,dup,crash-before")
    assert quoted == out


def test_a_replay_that_disagrees_says_so_and_how_late_its_timers_ran(bank: BankTemplate) -> None:
    config = SearchConfig(model=Model.TCP)
    lost = FaultSchedule.parse("client0 reply: #0 drop")
    sim = run_in_sim(bank, config.workload(), Model.DATAGRAM, lost, 1)
    clean = run_in_sim(bank, config.workload(), Model.DATAGRAM, FaultSchedule(), 1)
    late = dataclasses.replace(clean, timer_lag=0.060)
    result = Replay({"sim-udp": sim, "udp": late, "sim-tcp": sim, "tcp": sim})
    text = render_replay(config, lost, result)
    assert "udp: no-duplicate holds (timers ran up to 60 ms late)" in text
    assert "udp DISAGREES with sim-udp" in text and "its timers ran up to 60 ms late" in text
    assert "tcp agrees with sim-tcp" in text
