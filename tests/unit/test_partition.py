"""Timed faults: the partition window with time as an argument, and what FaultLink does in it."""

from __future__ import annotations

import pytest

from transports.faults import Cut, FaultLink, FaultSpec, FaultSpecError, LinkFaults, Partition
from transports.tcp_model import established_schedule
from transports.tcp_model.recovery import RetransmittingStream

ONCE = Partition(duration=2.0, start=1.0)


@pytest.mark.parametrize(
    ("t", "cut"),
    [
        (0.0, False),
        (0.999, False),
        (1.0, True),
        (2.5, True),
        (2.999, True),
        (3.0, False),
        (9.0, False),
    ],
)
def test_window_starts_at_start_and_ends_before_start_plus_duration(t: float, cut: bool) -> None:
    assert ONCE.cuts(False, 0, t) is cut
    assert (ONCE.window(t) == (1.0, 3.0)) is cut


def test_periodic_windows_repeat_every_period() -> None:
    p = Partition(duration=1.0, start=2.0, every=5.0)
    assert [p.cuts(False, None, t) for t in (1.9, 2.0, 2.9, 3.0, 6.9, 7.0, 7.5, 8.0, 12.2)] == [
        False, True, True, False, False, True, True, False, True,
    ]  # fmt: skip
    assert p.window(12.2) == (12.0, 13.0)


@pytest.mark.parametrize(
    ("cut", "requests", "replies"),
    [(Cut.BOTH, True, True), (Cut.REQUESTS, True, False), (Cut.REPLIES, False, True)],
)
def test_direction(cut: Cut, requests: bool, replies: bool) -> None:
    p = Partition(duration=1.0, cut=cut)
    assert p.cuts(False, 0, 0.5) is requests
    assert p.cuts(True, 0, 0.5) is replies


def test_chosen_clients_only() -> None:
    p = Partition(duration=1.0, clients=frozenset({1, 3}))
    assert [p.cuts(False, c, 0.5) for c in (0, 1, 2, 3, None)] == [False, True, False, True, False]


def test_spec_round_trip_and_canonical_text() -> None:
    text = (
        "partition=1.5s,partition_at=250ms,partition_every=10s,"
        "partition_dir=replies,partition_clients=0-9+12"
    )
    spec = FaultSpec.parse(text)
    assert spec.partition == Partition(1.5, 0.25, 10.0, Cut.REPLIES, frozenset([*range(10), 12]))
    assert str(spec) == text
    assert spec.link.partition == spec.partition
    assert not spec.link.is_zero and FaultSpec.parse("partition=0").is_zero


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("partition_at=1s", "need partition=DURATION"),
        ("partition=2s,partition_every=1s", "would overlap"),
        ("partition=1s,partition_dir=sideways", "partition_dir: expected one of both"),
        ("partition=1s,partition_clients=a-b", "partition_clients: expected 'all'"),
        ("partition=1s,partition_clients=5-2", "bad range"),
        ("partition=61s", "partition must be a duration in [0, 60]"),
        ("partition=1s,partition=2s", "duplicate fault key 'partition'"),
    ],
)
def test_bad_partition_specs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        FaultSpec.parse(text)


def _link(
    spec: str, label: str = "client3/request", *, stream: bool = False, origin: float = 0.0
) -> FaultLink:
    return FaultLink(FaultSpec.parse(spec).link, 7, label, stream=stream, origin=origin)


def test_datagram_sent_in_the_window_is_lost() -> None:
    link = _link("partition=1s,partition_at=1s")
    verdicts = [link.apply(b"m", t) for t in (0.5, 1.0, 1.99, 2.0)]
    assert [v.delivered for v in verdicts] == [True, False, False, True]
    assert verdicts[1].events == ("drop", "partition")
    assert link.counters["partition"] == 2


def test_partition_keeps_the_other_decisions_in_place() -> None:
    """Common random numbers: outside the window the same messages are lost as without it."""
    base, cut = _link("loss=0.3"), _link("loss=0.3,partition=1s,partition_at=1s")
    times = [k * 0.1 for k in range(40)]
    fates = [(base.apply(b"m", t).delivered, cut.apply(b"m", t).delivered) for t in times]
    assert all(a == b for (a, b), t in zip(fates, times, strict=True) if not 1.0 <= t < 2.0)
    assert not any(b for (_, b), t in zip(fates, times, strict=True) if 1.0 <= t < 2.0)


def test_origin_shifts_the_window() -> None:
    link = _link("partition=1s,partition_at=1s", origin=100.0)
    assert [link.apply(b"m", t).delivered for t in (1.5, 100.5, 101.5, 102.5)] == [
        True, True, False, True,
    ]  # fmt: skip


def test_only_the_cut_direction_and_client() -> None:
    spec = "partition=1s,partition_dir=replies,partition_clients=3"
    assert _link(spec, "client3/request").apply(b"m", 0.5).delivered
    assert not _link(spec, "client3/reply").apply(b"m", 0.5).delivered
    assert _link(spec, "client4/reply").apply(b"m", 0.5).delivered


def test_tcp_segment_waits_out_the_partition_on_the_rto_back_off() -> None:
    """Sent in the window, a segment is retransmitted as the model says, arriving after the heal."""
    link = _link("partition=1s,partition_at=1s", stream=True)
    sent = 1.1
    verdict = link.apply(b"m", sent)
    schedule = established_schedule(200e-6)  # the link's connection: one handshake RTT sample
    copies = [sent + offset for offset in schedule.offsets]
    first_after_heal = next(t for t in copies if t >= 2.0)
    assert all(t < 2.0 for t in copies if t < first_after_heal)
    assert verdict.deliveries[0].at == pytest.approx(first_after_heal)
    assert verdict.events[:2] == ("retransmitted", "partition")
    # A message written later waits behind it (head-of-line), however the window treats it.
    later = link.apply(b"n", 1.5)
    assert later.deliveries[0].at >= verdict.deliveries[0].at


def test_tcp_segment_outside_the_window_is_untouched() -> None:
    link = _link("partition=1s,partition_at=1s", stream=True)
    assert link.apply(b"m", 0.5).deliveries[0].at == 0.5
    assert link.apply(b"m", 2.5).deliveries[0].at == 2.5


def test_retransmitting_stream_blocked_copies_are_lost() -> None:
    stream = RetransmittingStream(0.0)
    fate = stream.transmit(0.0, False, lambda: False, blocked=lambda t: t < 1.0)
    assert fate.lost[-1] is False and all(fate.lost[:-1])
    assert fate.transmissions[-2] < 1.0 <= fate.transmissions[-1]
    assert fate.delivered_at == fate.transmissions[-1]


def test_link_faults_reject_a_non_partition() -> None:
    with pytest.raises(FaultSpecError, match="expected a Partition"):
        LinkFaults(partition=2.0)  # type: ignore[arg-type]


def test_without_an_origin_time_counts_from_the_first_message() -> None:
    link = FaultLink(FaultSpec.parse("partition=1s,partition_at=1s").link, 7, "client0/request")
    assert [link.apply(b"m", t).delivered for t in (100.0, 100.5, 101.5, 102.5)] == [
        True, True, False, True,
    ]  # fmt: skip
    assert link.origin == 100.0
