"""Hypothesis properties of the TCP loss-recovery model (transports.tcp_model).

The main one: while a connection stays up, TCP neither reorders nor loses a
message, whatever the network loses. Hypothesis chooses the send times, the
loss rate, the latencies and every draw, so it also tries the adversarial
patterns (long runs of lost copies, bursts of sends during a recovery).
"""

from __future__ import annotations

import itertools

from hypothesis import event, given
from hypothesis import strategies as st

from transports.tcp_model import (
    DEFAULT_CONFIG,
    RetransmittingStream,
    RttEstimator,
    SegmentFate,
    TcpConfig,
    recovery_schedule,
    retransmit_draws,
)

probabilities = st.floats(min_value=0.0, max_value=0.95)
unit = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
durations = st.floats(min_value=0.0, max_value=0.05)
configs = st.builds(
    TcpConfig, tlp=st.booleans(), timestamps=st.booleans(), hz=st.sampled_from([100, 250, 1000])
)


@st.composite
def workloads(draw: st.DrawFn) -> tuple[RetransmittingStream, list[SegmentFate], list[float]]:
    """A stream and the fates of a run of messages sent on it."""
    config = draw(configs)
    latency = draw(durations)
    handshake_rtt = draw(st.none() | st.floats(min_value=1e-6, max_value=0.5))
    s = RetransmittingStream(
        draw(probabilities),
        latency=latency,
        ack_latency=draw(durations),
        config=config,
        estimator=RttEstimator.after_handshake(handshake_rtt, config),
    )
    gaps = draw(st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=30))
    # Hypothesis controls every retransmission draw as well: long loss runs included.
    retransmission_draws = draw(st.lists(unit, min_size=1, max_size=40))
    pool = itertools.cycle(retransmission_draws).__next__
    latencies = []
    fates = []
    now = 0.0
    for gap in gaps:
        now += gap
        latencies.append(draw(durations))
        fates.append(s.send(now, draw(unit), pool, latency=latencies[-1]))
    return s, fates, latencies


@given(workloads())
def test_a_connection_that_stays_up_never_reorders_or_loses(
    workload: tuple[RetransmittingStream, list[SegmentFate], list[float]],
) -> None:
    _, fates, latencies = workload
    up = list(itertools.takewhile(lambda fate: fate.gave_up_at is None, fates))
    event("gave up" if len(up) < len(fates) else "stayed up")
    if any(fate.head_of_line_wait > 0 for fate in up):
        event("head-of-line wait")
    # Every message sent while the connection is up is delivered, exactly once...
    assert all(fate.delivered_at is not None and fate.arrived_at is not None for fate in up)
    delivered = [fate.delivered_at for fate in up if fate.delivered_at is not None]
    # ...in the order it was sent...
    assert delivered == sorted(delivered)
    floor = first_floor = -1.0
    for fate, latency in zip(up, latencies, strict=False):
        assert fate.arrived_at is not None and fate.delivered_at is not None
        # ...by its first copy the network did not lose...
        assert fate.lost[-1] is False and all(fate.lost[:-1])
        assert fate.arrived_at == fate.transmissions[-1] + latency
        # ...no earlier than it arrived, and only as late as the message ahead of it.
        floor = max(floor, fate.arrived_at)
        assert fate.delivered_at == floor
        # Segments leave in order, none before the application wrote it.
        assert fate.transmissions[0] >= max(fate.sent_at, first_floor)
        first_floor = fate.transmissions[0]
        assert list(fate.transmissions) == sorted(fate.transmissions)


@given(workloads())
def test_after_giving_up_nothing_more_is_delivered(
    workload: tuple[RetransmittingStream, list[SegmentFate], list[float]],
) -> None:
    s, fates, _ = workload
    dead = list(itertools.dropwhile(lambda fate: fate.gave_up_at is None, fates))
    assert all(not fate.delivered for fate in dead)
    if dead:
        assert s.closed_at == dead[0].gave_up_at
        assert all(fate.gave_up_at == s.closed_at for fate in dead)


@given(
    st.lists(st.floats(min_value=1e-6, max_value=10.0), min_size=1, max_size=50),
    configs,
    st.integers(min_value=0, max_value=20),
)
def test_rto_stays_between_the_floor_and_the_cap(
    samples: list[float], config: TcpConfig, timeouts: int
) -> None:
    estimator = RttEstimator(config)
    for rtt in samples:
        estimator.sample(rtt)
        srtt = estimator.srtt
        assert srtt is not None
        assert min(srtt + config.rto_min, config.rto_max) <= estimator.rto + 1e-9
        assert estimator.rto <= config.rto_max
    before = estimator.rto
    for _ in range(timeouts):
        estimator.on_timeout()
    assert estimator.rto == min(before * 2**timeouts, config.rto_max)


@given(
    st.floats(min_value=0.001, max_value=120.0),
    st.none() | st.floats(min_value=1e-6, max_value=10.0),
    st.integers(min_value=1, max_value=10),
    configs,
)
def test_schedule_shape(
    rto: float, srtt: float | None, packets_out: int, config: TcpConfig
) -> None:
    schedule = recovery_schedule(rto, srtt, packets_out=packets_out, tlp=config.tlp, config=config)
    offsets = schedule.offsets
    assert offsets[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(offsets))
    assert schedule.give_up > offsets[-1]
    if schedule.probe:
        assert offsets[1] <= rto  # a probe never comes later than the RTO would
    gaps = [b - a for a, b in itertools.pairwise(offsets[schedule.first_rto_index - 1 :])]
    # Exponential back-off, capped (to float rounding of the differences).
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(gaps))
    assert all(gap <= config.rto_max + 1e-9 for gap in gaps)


@given(
    st.lists(unit, min_size=1, max_size=40),
    st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=1, max_size=40),
    probabilities,
    probabilities,
)
def test_common_random_numbers(
    u_losses: list[float], seeds: list[int], loss_a: float, loss_b: float
) -> None:
    """Same draws: the higher loss rate loses every first copy the lower one loses.

    Compared over the messages both connections still send (a connection that
    gave up sends nothing more).
    """
    low, high = sorted((loss_a, loss_b))

    def first_copies(loss: float) -> list[bool | None]:
        s = RetransmittingStream(loss, estimator=RttEstimator.after_handshake(1e-4))
        fates = [
            s.send(float(i), u, retransmit_draws(seed))
            for i, (u, seed) in enumerate(zip(u_losses, itertools.cycle(seeds)))
        ]
        return [fate.lost[0] if fate.lost else None for fate in fates]

    for lost_low, lost_high in zip(first_copies(low), first_copies(high), strict=True):
        if lost_low is not None and lost_high is not None:
            assert lost_high or not lost_low


@given(unit, st.integers(min_value=0, max_value=2**64 - 1), probabilities, probabilities)
def test_a_lone_message_arrives_no_earlier_at_higher_loss(
    u_loss: float, seed: int, loss_a: float, loss_b: float
) -> None:
    low, high = sorted((loss_a, loss_b))

    def arrival(loss: float) -> float:
        s = RetransmittingStream(loss, estimator=RttEstimator.after_handshake(1e-4))
        fate = s.send(0.0, u_loss, retransmit_draws(seed))
        return fate.arrived_at if fate.arrived_at is not None else float("inf")

    assert arrival(low) <= arrival(high)


def test_default_config_is_linux() -> None:
    assert DEFAULT_CONFIG.rto_min == 0.2 and DEFAULT_CONFIG.rto_max == 120.0
