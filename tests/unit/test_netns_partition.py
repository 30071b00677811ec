"""The kernel backend's partition schedule and commands, without a kernel (fake runner)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from transports.faults import Cut, Partition
from transports.netns import CommandResult, UnsupportedFault
from transports.netns.pair import Side
from transports.netns.partition import (
    PARTITION_TABLE,
    PartitionTimer,
    check_partition,
    cut_sides,
    partition_events,
    set_cut,
)

A = Side("ns-a", "rtf-a", "10.213.0.1")
B = Side("ns-b", "rtf-b", "10.213.0.2")


def test_events_of_one_window() -> None:
    assert list(partition_events(Partition(2.0, 1.0), 100.0)) == [(1.0, True), (3.0, False)]


def test_periodic_events_stop_at_until() -> None:
    events = list(partition_events(Partition(1.0, 0.5, every=4.0), 9.0))
    assert events == [
        (0.5, True),
        (1.5, False),
        (4.5, True),
        (5.5, False),
        (8.5, True),
        (9.5, False),
    ]


def test_no_partition_no_events() -> None:
    assert list(partition_events(Partition(), 100.0)) == []


@pytest.mark.parametrize(
    ("cut", "sides"), [(Cut.REQUESTS, (B,)), (Cut.REPLIES, (A,)), (Cut.BOTH, (A, B))]
)
def test_the_rule_goes_where_the_cut_packets_arrive(cut: Cut, sides: tuple[Side, ...]) -> None:
    assert cut_sides(cut, A, B) == sides


def test_chosen_clients_are_refused() -> None:
    with pytest.raises(UnsupportedFault, match="partition_clients"):
        check_partition(Partition(1.0, clients=frozenset({1})))


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None]] = []

    def __call__(self, argv: Sequence[str], stdin: str | None) -> CommandResult:
        self.calls.append((list(argv), stdin))
        return CommandResult(list(argv), 0, "", "")


def test_set_cut_adds_a_drop_table_and_deletes_it() -> None:
    runner = Recorder()
    set_cut(runner, (B,), True)
    set_cut(runner, (B,), False)
    (add, script), (delete, _) = runner.calls
    assert add[:4] == ["ip", "netns", "exec", "ns-b"] and add[-2:] == ["-f", "-"]
    assert script is not None and f"iifname {B.device} counter drop" in script
    assert "priority -10" in script
    assert delete[-4:] == ["delete", "table", "inet", PARTITION_TABLE]


def test_timer_carries_out_every_due_event_in_order() -> None:
    applied: list[bool] = []
    # An origin long past: every event is due at once, no waiting on the clock.
    timer = PartitionTimer(
        Partition(0.5, 1.0, every=2.0), applied.append, origin=time.monotonic() - 100, until=6.0
    )
    assert timer.done(timeout=10)
    timer.stop()
    assert applied == [True, False, True, False, True, False]
    assert [at for at, _ in timer.applied] == [1.0, 1.5, 3.0, 3.5, 5.0, 5.5]


def test_stop_skips_events_not_yet_due_and_reports_errors() -> None:
    timer = PartitionTimer(Partition(1.0, 50.0), lambda _on: None)
    timer.stop()  # returns at once: the first event is 50 s away
    assert timer.applied == []
    failed = threading.Event()

    def broken(_on: bool) -> None:
        failed.set()
        raise RuntimeError("nft failed")

    timer = PartitionTimer(Partition(1.0), broken, origin=time.monotonic() - 10)
    assert failed.wait(10)
    with pytest.raises(RuntimeError, match="nft failed"):
        timer.stop()
