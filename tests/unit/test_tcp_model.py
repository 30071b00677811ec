"""Unit tests of the TCP loss-recovery model (transports.tcp_model): time is an argument.

Expected values are worked out by hand from the Linux source the model follows
(FAULTS.md, "TCP loss recovery model"). HZ is 250 unless a test says otherwise,
so timer values are whole multiples of 4 ms.
"""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from transports.tcp_model import (
    DEFAULT_CONFIG,
    TCP_RTO_MAX,
    Draw,
    Handshake,
    RetransmittingStream,
    RttEstimator,
    TcpConfig,
    connect,
    delay_distribution,
    established_schedule,
    model_timeout,
    p_delay_exceeds,
    p_sum_exceeds,
    recovery_schedule,
    retransmit_draws,
    syn_schedule,
)

LOOPBACK = 100e-6  # round-trip time of the testbed's loopback/veth paths
LOST, KEPT = 0.0, 0.999  # draws that lose / keep a copy at any 0 < loss < 0.999


def draws(*values: float) -> Draw:
    """A draw function cycling through ``values`` (default: keep every copy)."""
    return itertools.cycle(values or (KEPT,)).__next__


def scripted(*values: float) -> Draw:
    """A draw function returning ``values`` in order, then keeping every copy."""
    return itertools.chain(values, itertools.repeat(KEPT)).__next__


def stream(
    loss: float = 0.5, rtt: float = LOOPBACK, config: TcpConfig = DEFAULT_CONFIG
) -> RetransmittingStream:
    """An established stream whose handshake measured ``rtt`` (one-way = rtt / 2)."""
    estimator = RttEstimator.after_handshake(rtt, config)
    return RetransmittingStream(loss, latency=rtt / 2, config=config, estimator=estimator)


# --- constants and the give-up budget ---------------------------------------


def test_model_timeout_matches_the_kernel_documentation() -> None:
    # ip-sysctl.rst: tcp_retries2 = 15 "yields a hypothetical timeout of 924.6 seconds".
    assert model_timeout(15, 0.2) == pytest.approx(924.6)
    # SYN: tcp_syn_retries = 6 from the 1 s initial RTO is 127 s.
    assert model_timeout(6, 1.0) == pytest.approx(127.0)
    # Below the linear threshold (ilog2(120 / 0.2) = 9) it is a plain geometric sum.
    assert model_timeout(3, 0.2) == pytest.approx(0.2 + 0.4 + 0.8 + 1.6)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rto_min"):
        TcpConfig(rto_min=0.0)
    with pytest.raises(ValueError, match="exceed rto_max"):
        TcpConfig(rto_min=200.0)
    with pytest.raises(ValueError, match="retries2"):
        TcpConfig(retries2=-1)
    with pytest.raises(ValueError, match="hz"):
        TcpConfig(hz=0)


def test_jiffies_round_up() -> None:
    assert DEFAULT_CONFIG.jiffies(0.2001) == pytest.approx(0.204)
    assert TcpConfig(hz=1000).jiffies(0.2001) == pytest.approx(0.201)
    assert DEFAULT_CONFIG.jiffies(0.2) == pytest.approx(0.2)


# --- RTT estimator ----------------------------------------------------------------


def test_initial_rto_before_any_sample_is_one_second() -> None:
    estimator = RttEstimator()
    assert estimator.rto == 1.0
    assert estimator.srtt is None


def test_first_sample_floors_rttvar_at_rto_min() -> None:
    estimator = RttEstimator()
    estimator.sample(LOOPBACK)
    assert estimator.srtt == pytest.approx(LOOPBACK)
    assert estimator.rttvar == pytest.approx(0.2)  # max(2 * rtt, rto_min)
    assert estimator.rto == pytest.approx(0.204)  # 200.1 ms rounded up to 4 ms jiffies


def test_first_large_sample_gives_three_rtts() -> None:
    estimator = RttEstimator(TcpConfig(hz=1000))
    estimator.sample(0.5)  # mdev = 2 * rtt: "make sure rto = 3*rtt"
    assert estimator.rto == pytest.approx(1.5)


def test_rto_floor_holds_over_many_samples() -> None:
    estimator = RttEstimator(TcpConfig(hz=1000))
    for _ in range(200):
        estimator.sample(0.001)
    assert estimator.srtt == pytest.approx(0.001)
    assert estimator.rttvar == pytest.approx(0.2)
    assert estimator.rto == pytest.approx(0.201)


def test_falling_rtt_uses_the_finer_gain() -> None:
    # Worked through tcp_rtt_estimator(): after 300 ms, a 1 ms sample moves
    # srtt to 262.625 ms and mdev only by (299000 - 150000) >> 3.
    estimator = RttEstimator(TcpConfig(hz=1000))
    estimator.sample(0.3)
    assert estimator.rto == pytest.approx(0.9)
    estimator.sample(0.001)
    assert estimator.srtt == pytest.approx(0.262625)
    assert estimator.rttvar == pytest.approx(0.618625)
    assert estimator.rto == pytest.approx(0.882)  # 881.25 ms rounded up to a jiffy


def test_rising_rtt_raises_the_rto_at_once() -> None:
    estimator = RttEstimator()
    for _ in range(20):
        estimator.sample(0.001)
    estimator.sample(0.3)
    assert estimator.rto > 0.3


def test_backoff_doubles_and_caps_and_a_valid_sample_collapses_it() -> None:
    estimator = RttEstimator.after_handshake(LOOPBACK)
    rtos = []
    for _ in range(12):
        estimator.on_timeout()
        rtos.append(estimator.rto)
    assert rtos[:4] == pytest.approx([0.408, 0.816, 1.632, 3.264])
    assert max(rtos) == TCP_RTO_MAX
    assert estimator.backoff == 12
    estimator.sample(LOOPBACK)
    assert estimator.rto == pytest.approx(0.204)
    assert estimator.backoff == 0


def test_no_handshake_sample_falls_back_to_three_seconds() -> None:
    estimator = RttEstimator.after_handshake(None)
    assert estimator.rto == 3.0
    assert estimator.srtt is None


def test_estimator_rejects_negative_samples() -> None:
    with pytest.raises(ValueError, match="rtt"):
        RttEstimator().sample(-1.0)


# --- the recovery schedule: TLP, then RTO back-off, then giving up ----------------


def test_loopback_schedule_probe_then_doubling() -> None:
    schedule = established_schedule(LOOPBACK)
    # PTO = 2*srtt + rto_min = 200.2 ms -> 204 ms, no later than the RTO (204 ms);
    # the probe re-arms the RTO from its own send time.
    assert schedule.probe
    assert schedule.offsets[:6] == pytest.approx([0.0, 0.204, 0.408, 0.816, 1.632, 3.264])


def test_pto_is_earlier_than_rto_when_rttvar_is_large() -> None:
    schedule = established_schedule(0.5, config=TcpConfig(hz=1000))  # rto 1.5 s
    # PTO = 2 * 0.5 + 0.2 = 1.2 s < RTO; then the RTO (1.5 s) from the probe, doubling.
    assert schedule.offsets[:4] == pytest.approx([0.0, 1.2, 2.7, 5.7])


def test_pto_with_more_than_one_packet_in_flight_drops_the_delayed_ack_term() -> None:
    config = TcpConfig(hz=1000)
    one = established_schedule(0.001, packets_out=1, config=config)
    two = established_schedule(0.001, packets_out=2, config=config)
    assert one.offsets[1] == pytest.approx(0.201)  # min(2 ms + 200 ms, RTO 201 ms)
    assert two.offsets[1] == pytest.approx(0.004)  # 2 * srtt + TCP_TIMEOUT_MIN (2 ms)


def test_pto_without_an_rtt_sample_is_one_second() -> None:
    schedule = established_schedule(None)  # RTO fell back to 3 s
    assert schedule.offsets[:4] == pytest.approx([0.0, 1.0, 4.0, 10.0])


def test_without_tlp_the_rto_doubles_from_the_first_send() -> None:
    schedule = established_schedule(LOOPBACK, config=TcpConfig(tlp=False))
    assert not schedule.probe
    assert schedule.offsets[:4] == pytest.approx([0.0, 0.204, 0.612, 1.428])


def test_backoff_caps_at_rto_max() -> None:
    schedule = established_schedule(LOOPBACK)
    gaps = [b - a for a, b in itertools.pairwise(schedule.offsets[2:])]
    assert gaps == sorted(gaps)
    assert max(gaps) == pytest.approx(TCP_RTO_MAX)
    assert schedule.rtos[-1] == TCP_RTO_MAX


def test_give_up_is_a_time_budget_not_a_count() -> None:
    budget = model_timeout(15, 0.2)
    for rto, expected_rto_retransmissions in ((0.204, 15), (0.2, 16), (1.0, 13)):
        schedule = recovery_schedule(rto, None, tlp=False)
        retransmissions = schedule.offsets[1:]
        assert len(retransmissions) == expected_rto_retransmissions
        # Linux checks at each expiry, from the first RTO retransmission.
        assert schedule.give_up - retransmissions[0] >= budget
        assert retransmissions[-1] - retransmissions[0] < budget


# --- the stream: delivery, head-of-line blocking, Karn, giving up ------------------


def test_no_loss_delivers_after_the_one_way_latency() -> None:
    s = stream(loss=0.0)
    fate = s.send(1.0, 0.5, scripted())
    assert fate.delivered_at == pytest.approx(1.0 + LOOPBACK / 2)
    assert fate.transmissions == (1.0,)
    assert fate.retransmissions == 0


def test_lost_segment_is_delivered_at_its_first_successful_retransmission() -> None:
    s = stream()
    fate = s.send(0.0, LOST, scripted(LOST, KEPT))  # first and probe lost, first RTO kept
    assert fate.probe
    assert fate.transmissions == pytest.approx((0.0, 0.204, 0.408))
    assert fate.lost == (True, True, False)
    assert fate.delivered_at == pytest.approx(0.408 + LOOPBACK / 2)


def test_head_of_line_blocking() -> None:
    s = stream()
    first = s.send(0.0, LOST, scripted())  # recovered by the probe at 204 ms
    second = s.send(0.05, KEPT, scripted())  # arrives at once, waits behind the first
    third = s.send(1.0, KEPT, scripted())  # the queue is empty again
    assert first.delivered_at == pytest.approx(0.204 + LOOPBACK / 2)
    assert second.arrived_at == pytest.approx(0.05 + LOOPBACK / 2)
    assert second.delivered_at == first.delivered_at
    assert second.head_of_line_wait == pytest.approx(0.154)
    assert third.delivered_at == pytest.approx(1.0 + LOOPBACK / 2)
    assert third.head_of_line_wait == 0.0


def test_a_retry_into_the_queue_means_both_copies_arrive() -> None:
    # The DESIGN.md scenario: the client times out at 100 ms, shorter than the
    # 204 ms probe, and sends its retry on the same connection. TCP still
    # delivers the original, so the server sees the request twice.
    s = stream()
    original = s.send(0.0, LOST, scripted())
    retry = s.send(0.1, KEPT, scripted())
    assert original.delivered and retry.delivered
    assert original.delivered_at == retry.delivered_at == pytest.approx(0.204 + LOOPBACK / 2)


def test_second_packet_in_flight_gets_the_short_probe() -> None:
    s = stream(config=TcpConfig(hz=1000))
    s.send(0.0, LOST, scripted(LOST, LOST, KEPT))  # still unacked at 0.1
    fate = s.send(0.1, LOST, scripted())
    assert fate.transmissions[1] == pytest.approx(0.1 + 0.003)  # 2 * srtt + 2 ms = 2.2 ms


def test_new_data_waits_while_the_connection_recovers_from_an_rto() -> None:
    s = stream()
    head = s.send(0.0, LOST, scripted(LOST, LOST, KEPT))  # first RTO expiry at 0.408
    assert head.delivered_at is not None
    fate = s.send(0.5, LOST, scripted())  # written in the loss state: cwnd is one segment
    # It leaves once the head's ACK is back, with the RTO that ACK's sample restored
    # (not the doubled one), and so with a tail loss probe again.
    acked = head.delivered_at + LOOPBACK / 2
    assert fate.transmissions[0] == pytest.approx(acked)
    assert fate.probe and fate.transmissions[1] == pytest.approx(acked + 0.204)
    # Segments leave in order: a later write waits for this one's first transmission.
    assert s.send(0.6, KEPT, scripted()).transmissions[0] == pytest.approx(acked)


@pytest.mark.parametrize(("timestamps", "srtt_moves"), [(True, True), (False, False)])
def test_karn_rule(timestamps: bool, srtt_moves: bool) -> None:
    config = TcpConfig(timestamps=timestamps)
    # Handshake RTT 1 ms, but the path now takes 20 ms each way.
    s = RetransmittingStream(
        0.5, latency=0.02, estimator=RttEstimator.after_handshake(0.001, config), config=config
    )
    fate = s.send(0.0, LOST, scripted(LOST, KEPT))  # recovered by the first RTO retransmission
    assert fate.retransmissions == 2
    s.send(10.0, KEPT, scripted())  # by now the ACK and the expiry are processed
    if srtt_moves:  # the echoed timestamp times the retransmission
        assert s.estimator.srtt == pytest.approx(0.001 + (0.040 - 0.001) / 8)
        assert s.estimator.backoff == 0
    else:  # Karn: no sample; the back-off persists until a clean one
        assert s.estimator.srtt == pytest.approx(0.001)
        assert s.estimator.backoff == 1
        assert s.estimator.rto == pytest.approx(0.408)


def test_clean_sample_after_karn_collapses_the_backoff() -> None:
    config = TcpConfig(timestamps=False)
    s = stream(config=config)
    s.send(0.0, LOST, scripted(LOST, KEPT))
    s.send(10.0, KEPT, scripted())  # never retransmitted: a valid sample
    s.send(20.0, KEPT, scripted())
    assert s.estimator.backoff == 0
    assert s.estimator.rto == pytest.approx(0.204)


def test_give_up_closes_the_connection() -> None:
    s = stream(loss=1.0)
    fate = s.send(5.0, 0.5, draws())
    assert not fate.delivered
    assert fate.gave_up_at is not None
    assert fate.gave_up_at == pytest.approx(5.0 + established_schedule(LOOPBACK).give_up)
    assert 924.6 < fate.gave_up_at - 5.0 < 1100
    assert fate.retransmissions == 16  # the probe and 15 RTO retransmissions
    later = s.send(6.0, KEPT, draws())
    assert not later.delivered
    assert later.gave_up_at == fate.gave_up_at
    assert s.closed_at == fate.gave_up_at


def test_messages_behind_a_doomed_one_are_never_delivered() -> None:
    s = stream(loss=0.5)
    doomed = s.send(0.0, LOST, draws(LOST))
    behind = s.send(0.1, KEPT, draws())
    assert doomed.gave_up_at is not None
    assert not behind.delivered


def test_stream_rejects_time_going_backwards_and_bad_draws() -> None:
    s = stream()
    s.send(1.0, KEPT, scripted())
    with pytest.raises(ValueError, match="backwards"):
        s.send(0.5, KEPT, scripted())
    with pytest.raises(ValueError, match="u_loss"):
        s.send(2.0, 1.5, scripted())
    with pytest.raises(ValueError, match="loss"):
        RetransmittingStream(1.2)


def test_per_message_overrides() -> None:
    s = stream(loss=0.0)
    fate = s.send(0.0, 0.3, scripted(), latency=0.01, loss=0.5)  # e.g. a Gilbert-Elliott bad state
    assert fate.lost == (True, False)
    assert fate.arrived_at == pytest.approx(0.204 + 0.01)


# --- common random numbers -------------------------------------------------------


def run(loss: float, seed: int, n: int = 300) -> list[tuple[float | None, tuple[bool, ...]]]:
    rng = random.Random(seed)
    s = stream(loss)
    out = []
    now = 0.0
    for _ in range(n):
        now += rng.expovariate(10.0)
        u_loss, message_seed = rng.random(), rng.getrandbits(64)
        fate = s.send(now, u_loss, retransmit_draws(message_seed))
        out.append((fate.delivered_at, fate.lost))
    return out


def test_same_seed_same_decisions() -> None:
    assert run(0.3, seed=11) == run(0.3, seed=11)
    assert run(0.3, seed=11) != run(0.3, seed=12)


def test_higher_loss_loses_a_superset_of_first_transmissions() -> None:
    low, high = run(0.1, seed=5), run(0.2, seed=5)
    lost_low = {i for i, (_, lost) in enumerate(low) if lost[0]}
    lost_high = {i for i, (_, lost) in enumerate(high) if lost[0]}
    assert lost_low < lost_high


def test_a_lone_message_is_never_earlier_at_higher_loss() -> None:
    rng = random.Random(3)
    for _ in range(200):
        u_loss, message_seed = rng.random(), rng.getrandbits(64)
        arrivals = []
        for loss in (0.05, 0.1, 0.3, 0.5):
            fate = stream(loss).send(0.0, u_loss, retransmit_draws(message_seed))
            assert fate.arrived_at is not None
            arrivals.append(fate.arrived_at)
        assert arrivals == sorted(arrivals)


def test_retransmit_draws_are_lazy_and_seeded() -> None:
    a, b = retransmit_draws(42), retransmit_draws(42)
    assert [a() for _ in range(5)] == [b() for _ in range(5)]
    assert retransmit_draws(42)() != retransmit_draws(43)()
    # Independent of the corruption bits FaultLink draws from the same seed.
    assert retransmit_draws(42)() != random.Random(42).random()


# --- connection set-up ----------------------------------------------------------


def test_syn_schedule_linear_then_exponential() -> None:
    offsets, fails_at = syn_schedule()
    # ip-sysctl.rst: with tcp_syn_linear_timeouts = 4, "1, 1, 1, 1, 1, 2, 4, ..."
    assert offsets == (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 11.0, 19.0, 35.0, 67.0)
    assert fails_at == 131.0


def test_syn_schedule_before_linear_timeouts() -> None:
    offsets, fails_at = syn_schedule(TcpConfig(syn_linear_timeouts=0))
    assert offsets == (0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0)
    assert fails_at == 127.0


def handshake(syn: Draw, synack: Draw, config: TcpConfig = DEFAULT_CONFIG) -> Handshake:
    return connect(10.0, syn, synack, syn_loss=0.5, synack_loss=0.5, latency=0.001, config=config)


def test_handshake_without_loss() -> None:
    h = handshake(scripted(), scripted())
    assert h.established_at == pytest.approx(10.002)
    assert h.client_rtt == pytest.approx(0.002)
    assert h.server_rtt == pytest.approx(0.002)
    assert h.syns == (10.0,)


def test_lost_syn_costs_the_one_second_syn_rto() -> None:
    h = handshake(scripted(LOST), scripted())
    assert h.syns == (10.0, 11.0)
    assert h.established_at == pytest.approx(11.002)
    assert h.client_rtt == pytest.approx(0.002)  # timestamps echo the SYN that got through


def test_lost_syn_without_timestamps_gives_no_sample_and_a_three_second_rto() -> None:
    h = handshake(scripted(LOST), scripted(), config=TcpConfig(timestamps=False))
    assert h.client_rtt is None  # Karn: the SYN was retransmitted
    assert h.server_rtt == pytest.approx(0.002)  # the server's SYN-ACK was not
    assert RttEstimator.after_handshake(h.client_rtt).rto == 3.0


def test_lost_synack_is_answered_by_the_duplicate_syn() -> None:
    h = handshake(scripted(), scripted(LOST))
    # The SYN-ACK at 10.001 is lost. The client's SYN retransmission at 11.0
    # reaches the server at 11.001, together with the server's own 1 s timer:
    # the duplicate SYN is answered at once and re-arms that timer.
    assert h.syns == (10.0, 11.0)
    assert h.synacks == pytest.approx((10.001, 11.001))
    assert h.established_at == pytest.approx(11.002)
    # tcp_check_req() answers a duplicate SYN without updating ts_recent, so the
    # SYN-ACK echoes the first SYN's timestamp: the client samples a 1 s RTT.
    assert h.client_rtt == pytest.approx(1.002)
    assert RttEstimator.after_handshake(h.client_rtt).rto == pytest.approx(3.008)
    assert h.server_rtt == pytest.approx(0.002)  # the echo times the SYN-ACK that got through
    no_ts = handshake(scripted(), scripted(LOST), config=TcpConfig(timestamps=False))
    assert no_ts.server_rtt is None  # Karn: the SYN-ACK was retransmitted
    assert no_ts.client_rtt is None  # ...and so was the SYN


def test_lost_synack_is_answered_by_the_server_timer() -> None:
    h = handshake(scripted(KEPT, LOST), scripted(LOST))  # the SYN retransmission is lost too
    assert h.syns == (10.0, 11.0)
    assert h.synacks == pytest.approx((10.001, 11.001))  # the second from the server's timer
    assert h.established_at == pytest.approx(11.002)


def test_server_synack_timer_backs_off() -> None:
    # The server's own SYN-ACK timer: 1, 2, 4, ... s after the request, re-armed by
    # each duplicate SYN; with the clients' SYNs lost after the first we see it alone.
    h = handshake(scripted(KEPT, *[LOST] * 10), draws(LOST))
    timer_synacks = [round(t - 10.001, 6) for t in h.synacks]
    assert timer_synacks == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0]  # then the request expires
    assert not h.established
    assert h.failed_at == pytest.approx(10.0 + 131.0)


def test_connect_fails_when_every_syn_is_lost() -> None:
    h = handshake(draws(LOST), draws())
    assert not h.established
    assert h.failed_at == pytest.approx(141.0)
    assert len(h.syns) == 11
    assert h.synacks == ()


def test_connect_is_deterministic_for_a_seed() -> None:
    def once(seed: int) -> Handshake:
        rng = random.Random(seed)
        return connect(0.0, rng.random, rng.random, syn_loss=0.5, synack_loss=0.5)

    assert once(1) == once(1)


# --- analytic side ------------------------------------------------------------------


def test_p_delay_exceeds_counts_the_transmissions_in_time() -> None:
    schedule = established_schedule(LOOPBACK)  # 0, 204, 408, 816, 1632 ms, ...
    assert p_delay_exceeds(0.1, schedule, 0.3) == pytest.approx(0.3)
    assert p_delay_exceeds(0.5, schedule, 0.3) == pytest.approx(0.3**3)
    assert p_delay_exceeds(1.5, schedule, 0.3) == pytest.approx(0.3**4)
    assert p_delay_exceeds(1e6, schedule, 0.3) == pytest.approx(0.3 ** len(schedule.offsets))


def test_round_trip_prediction() -> None:
    schedule = established_schedule(LOOPBACK)
    d = delay_distribution(schedule, 0.3)
    # Shorter than any retransmission: the round trip is late unless both first copies arrive.
    assert p_sum_exceeds(0.1, d, d) == pytest.approx(1 - 0.7**2)
    assert sum(p for _, p in d) == pytest.approx(1 - 0.3 ** len(schedule.offsets))
    assert p_sum_exceeds(1.5, d, d) < p_sum_exceeds(0.5, d, d) < p_sum_exceeds(0.1, d, d)


def test_analytic_agrees_with_the_stream() -> None:
    loss, timeout, n = 0.3, 0.5, 4000
    rng = random.Random(8)
    late = 0
    for i in range(n):
        s = stream(loss)  # a lone message: no head-of-line wait
        fate = s.send(float(i), rng.random(), retransmit_draws(rng.getrandbits(64)))
        assert fate.arrived_at is not None
        late += fate.arrived_at - fate.sent_at > timeout
    expected = p_delay_exceeds(timeout, established_schedule(LOOPBACK), loss, LOOPBACK / 2)
    assert late / n == pytest.approx(expected, abs=4 * (expected / n) ** 0.5)


def test_fates_are_frozen() -> None:
    fate = stream().send(0.0, KEPT, scripted())
    with pytest.raises(dataclasses.FrozenInstanceError):
        fate.delivered_at = 1.0  # type: ignore[misc]
