"""Partitions in the fault-schedule search: the text form, the command line, the
Hypothesis space, 1-minimality (removal and narrowing) and the explanation (no sockets)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from experiments.search.bank import BankTemplate, Model, run_in_sim
from experiments.search.cli import main
from experiments.search.config import SearchConfig
from experiments.search.space import narrower_windows, partition_windows, without_each_fault
from experiments.search.tool import run_search
from transports.schedule import FaultSchedule, Window
from transports.semantics import Semantics

#: At-most-once whose reply cache keeps a reply 1.5 timeouts (225 ms).
SHORT_CACHE = SearchConfig(
    Semantics.AT_MOST_ONCE, faults=("partition",), retention=0.225, examples=200
)


@pytest.fixture(scope="module")
def bank() -> Iterator[BankTemplate]:
    with BankTemplate.temporary(2) as template:
        yield template


def test_a_partition_window_round_trips_through_the_schedule_text() -> None:
    text = "client0 reply: #1 drop, partition 0ms-225ms; client1 request: partition 75ms-1.275s"
    schedule = FaultSchedule.parse(text)
    assert schedule.client(0).reply_window == Window(0.0, 0.225)
    assert schedule.client(1).request_window == Window(0.075, 1.275)
    assert FaultSchedule.parse(str(schedule)) == schedule
    assert str(schedule) == (
        "client0 reply: #1 drop, partition 0ms-225ms; client1 request: partition 75ms-1275ms"
    )
    assert schedule.faults == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--faults", "partitoin"], "crash-after, partition"),  # the choices, partition last
        (["--retention", "0"], "argument --retention: invalid duration value: '0'"),
        (["replay", "client0 reply: partition 300ms-100ms"], "0 <= start < end <= 60 s"),
        (["replay", "client0 reply: partition soon"], "expected 'partition START-END'"),
        (
            ["replay", "client0 reply: partition 0ms-1ms, partition 2ms-3ms"],
            "one partition per link",
        ),
    ],
)
def test_bad_partition_input_gets_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    try:
        status = main(argv)
    except SystemExit as exit_info:
        status = int(exit_info.code or 0)
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_partition_is_not_searched_unless_asked() -> None:
    assert SearchConfig().space().windows == ()
    assert SearchConfig(faults=("drop", "partition")).space().windows


def test_window_edges_sit_halfway_between_retries() -> None:
    # Nothing is sent at the instant a window opens or heals, in the simulator
    # (retries at multiples of the timeout, a few 0.1 ms steps after) or in a
    # real run whose timers are a few ms late.
    timeout = 0.150
    windows = SearchConfig(faults=("partition",)).space().windows
    assert windows == partition_windows(timeout, 9)
    assert len(windows) == 45 and windows[0] == Window(0.0, 0.075)
    lengths = [round(w.end - w.start, 9) for w in windows]
    assert lengths == sorted(lengths)  # shortest first: Hypothesis shrinks towards them
    for edge in {e for w in windows for e in (w.start, w.end)} - {0.0}:
        assert abs(edge / timeout - round(edge / timeout)) == pytest.approx(0.5)


def test_removal_and_narrowing_cover_partitions() -> None:
    schedule = FaultSchedule.parse("client0 reply: #0 drop, partition 75ms-375ms")
    removed = [str(s) for s in without_each_fault(schedule)]
    assert removed == ["client0 reply: partition 75ms-375ms", "client0 reply: #0 drop"]
    grid = partition_windows(0.150, 4)
    narrower = [s.client(0).reply_window for s in narrower_windows(schedule, grid)]
    assert narrower == [Window(0.075, 0.225), Window(0.225, 0.375)]


def test_a_shrunk_partition_schedule_is_one_minimal(bank: BankTemplate) -> None:
    answer = run_search(SHORT_CACHE, bank)
    assert str(answer.schedule) == "client0 reply: partition 0ms-225ms"
    assert answer.schedule is not None and answer.clients == 1

    def holds(schedule: FaultSchedule) -> bool:
        run = run_in_sim(bank, SHORT_CACHE.workload(), Model.DATAGRAM, schedule, 1, seed=1)
        return SHORT_CACHE.prop.holds(run)

    assert not holds(answer.schedule)
    assert [holds(s) for s in without_each_fault(answer.schedule)] == [True]
    narrower = list(narrower_windows(answer.schedule, SHORT_CACHE.space().windows))
    assert narrower and all(holds(s) for s in narrower)  # no shorter window inside breaks it


def test_the_default_reply_cache_outlasts_every_partition(bank: BankTemplate) -> None:
    config = SearchConfig(Semantics.AT_MOST_ONCE, faults=("partition",), examples=150)
    assert run_search(config, bank).schedule is None


def test_the_answer_shows_the_partition(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--semantics", "at-most-once", "--faults", "partition", "--retention", "225ms"]
    assert main([*argv, "--examples", "200"]) == 0
    out = capsys.readouterr().out
    assert "  client0 reply: partition 0ms-225ms\n" in out
    assert "semantics at-most-once (the reply cache keeps a reply 225 ms)" in out
    assert "as does narrowing a partition window to any shorter one inside it" in out
    assert "client0/reply: partition begins, cuts all it sends until 225.0 ms" in out
    assert "client0/reply #0: reply c0-0 attempt 1, lost (cut by the partition)" in out
    assert "client0/reply: partition heals" in out
    assert "client0/reply 5 messages, 2 cut by the partition\n" in out
    assert "--retention 225ms" in out.split("replay it on real TCP")[1]
