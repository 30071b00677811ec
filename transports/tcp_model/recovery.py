"""Loss recovery of one TCP direction: probe and retransmission times, FIFO delivery.

Role: ``recovery_schedule`` gives the times at which Linux sends one segment
again while every copy is lost (tail loss probe, then RTO back-off, then giving
up); ``RetransmittingStream`` applies it message by message to one direction of
one connection, with head-of-line blocking, the connection-wide RTT estimator
and Karn's rule. Time is an argument and every loss comes from a draw the
caller supplies, so one seed reproduces every decision.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from transports.tcp_model.config import (
    DEFAULT_CONFIG,
    TCP_TIMEOUT_MIN,
    Draw,
    TcpConfig,
    _duration,
    _probability,
    model_timeout,
)
from transports.tcp_model.rtt import RttEstimator


@dataclass(frozen=True)
class RecoverySchedule:
    """When one segment goes out, relative to its first send, while every copy is lost.

    ``offsets[0]`` is the first transmission; ``offsets[1]`` is the tail loss
    probe when ``probe``; the rest are RTO retransmissions, and ``rtos[k]`` is
    the connection's RTO after the k-th expiry. At ``give_up`` the timer
    expires once more and the connection aborts instead (ETIMEDOUT).
    """

    offsets: tuple[float, ...]
    probe: bool
    give_up: float
    rtos: tuple[float, ...]

    @property
    def first_rto_index(self) -> int:
        return 2 if self.probe else 1


def recovery_schedule(
    rto: float,
    srtt: float | None,
    *,
    packets_out: int = 1,
    tlp: bool = True,
    config: TcpConfig = DEFAULT_CONFIG,
) -> RecoverySchedule:
    """The (re)transmission times of one segment sent with this RTO and SRTT.

    Tail loss probe (``tcp_schedule_loss_probe()``): PTO = 2*srtt, plus
    ``rto_min`` when this is the only packet in flight (the peer may be
    delaying its ACK) or ``TCP_TIMEOUT_MIN`` otherwise; 1 s without an RTT
    sample; and never later than the RTO. The probe re-arms the RTO timer from
    its own send time. Each RTO expiry retransmits and doubles the RTO up to
    ``rto_max`` (``tcp_retransmit_timer()``). The connection gives up at the
    first expiry at least ``model_timeout(retries2, rto_min)`` after the first
    RTO retransmission (``retransmits_timed_out()``).
    """
    _duration("rto", rto)
    offsets = [0.0]
    t = 0.0
    if tlp:
        if srtt is None:
            pto = config.timeout_init
        else:
            pto = config.jiffies(
                2.0 * srtt + (config.rto_min if packets_out == 1 else TCP_TIMEOUT_MIN)
            )
        t = min(pto, rto)
        offsets.append(t)
    budget = model_timeout(config.retries2, config.rto_min, config.rto_max)
    rtos: list[float] = []
    first_retransmit: float | None = None
    while True:
        t += rto
        if first_retransmit is not None and t - first_retransmit >= budget:
            return RecoverySchedule(tuple(offsets), tlp, t, tuple(rtos))
        if first_retransmit is None:
            first_retransmit = t
        offsets.append(t)
        rto = min(2.0 * rto, config.rto_max)
        rtos.append(rto)


def established_schedule(
    rtt: float | None, *, packets_out: int = 1, config: TcpConfig = DEFAULT_CONFIG
) -> RecoverySchedule:
    """The schedule of a segment on a connection whose one RTT sample is the handshake's ``rtt``."""
    estimator = RttEstimator.after_handshake(rtt, config)
    return recovery_schedule(
        estimator.rto, estimator.srtt, packets_out=packets_out, tlp=config.tlp, config=config
    )


def retransmit_draws(message_seed: int) -> Draw:
    """The draws for one message's retransmissions, from its own sub-generator.

    Seed it with the message's 64-bit ``corrupt_seed`` from ``FaultLink``: the
    salt keeps the stream independent of the corruption bits, the generator is
    only built when a first transmission is lost, and the link's main sequence
    keeps its fixed eight draws per message however many copies are sent.
    """
    rng: random.Random | None = None

    def draw() -> float:
        nonlocal rng
        if rng is None:
            rng = random.Random(f"{message_seed}/tcp-retransmit")
        return rng.random()

    return draw


@dataclass(frozen=True)
class SegmentFate:
    """What the connection does with one message (one segment)."""

    sent_at: float
    transmissions: tuple[float, ...]  # when each copy left, the first transmission first
    lost: tuple[bool, ...]  # which of those copies the network lost
    probe: bool  # transmissions[1] was a tail loss probe
    arrived_at: float | None  # the first copy to reach the receiver
    delivered_at: float | None  # handed to the application, never before an earlier message
    gave_up_at: float | None  # the connection aborted (ETIMEDOUT) before delivering it

    @property
    def delivered(self) -> bool:
        return self.delivered_at is not None

    @property
    def retransmissions(self) -> int:
        return max(0, len(self.transmissions) - 1)

    @property
    def head_of_line_wait(self) -> float:
        """How long the message sat at the receiver behind an earlier, lost one."""
        if self.delivered_at is None or self.arrived_at is None:
            return 0.0
        return self.delivered_at - self.arrived_at


@dataclass(frozen=True, order=True)
class _Event:
    at: float
    seq: int
    acked: int | None = field(default=None, compare=False)  # None: an RTO expiry
    value: float | None = field(default=None, compare=False)  # RTT sample, or RTO after expiry


class RetransmittingStream:
    """One direction of one TCP connection: when each message reaches the application.

    ``send`` decides a message's whole fate at once: the first copy is lost
    when ``u_loss < loss`` (the fault link's own draw, so losses stay common
    random numbers), every later copy when ``draws() < loss``. The first copy
    to arrive is delivered after ``latency``, but never before the message
    ahead of it (a byte stream does not reorder). ACKs come back after
    ``ack_latency`` and are never lost; they feed the RTT estimator, Karn's rule
    included, and the connection-wide back-off persists until a valid sample.
    Once a segment exhausts its retries the connection is dead: that message
    and every later one are undelivered, with ``gave_up_at`` set.
    """

    def __init__(
        self,
        loss: float,
        *,
        latency: float = 0.0,
        ack_latency: float | None = None,
        base_rtt: float = 0.0,
        config: TcpConfig = DEFAULT_CONFIG,
        estimator: RttEstimator | None = None,
    ) -> None:
        self.loss = _probability("loss", loss)
        self.latency = _duration("latency", latency)
        self.ack_latency = self.latency if ack_latency is None else _duration("ack", ack_latency)
        #: Added to every RTT sample: the round trip of a network the caller
        #: keeps outside the stream's own latencies (a fault layer above it).
        self.base_rtt = _duration("base_rtt", base_rtt)
        self.config = config
        self.estimator = RttEstimator(config) if estimator is None else estimator
        self.closed_at: float | None = None
        self._now = -math.inf
        self._sent = 0
        self._last_delivery = -math.inf
        self._events: list[_Event] = []
        self._seq = itertools.count()
        self._in_flight: dict[int, float] = {}  # unacked message -> its first RTO expiry
        self._acked_at: dict[int, float] = {}  # unacked message -> when its ACK arrives
        self._send_floor = -math.inf  # first transmission of the latest message

    def send(
        self,
        now: float,
        u_loss: float,
        draws: Draw,
        *,
        latency: float | None = None,
        loss: float | None = None,
    ) -> SegmentFate:
        """Send one message at ``now``; ``latency``/``loss`` override the stream's for it."""
        _probability("u_loss", u_loss)
        p = self.loss if loss is None else _probability("loss", loss)
        return self.transmit(now, u_loss < p, lambda: draws() < p, latency=latency)

    def transmit(
        self,
        now: float,
        first_lost: bool,
        retransmission_lost: Callable[[], bool],
        *,
        latency: float | None = None,
        blocked: Callable[[float], bool] | None = None,
    ) -> SegmentFate:
        """Send one message whose losses are already decided.

        ``first_lost``: the first copy is lost; ``retransmission_lost()`` is
        asked once per later copy. ``send`` decides from uniform draws; a
        fault link or an explicit schedule decides here. ``blocked(t)``: a
        copy that goes out at ``t`` is lost whatever the draws say (a
        partition); each copy's draw is still made, so later draws keep their
        place.
        """
        if now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        one_way = self.latency if latency is None else _duration("latency", latency)
        self._now = now
        start = self._first_transmission(now)
        index, self._sent = self._sent, self._sent + 1
        if self.closed_at is not None:
            return SegmentFate(now, (), (), False, None, None, self.closed_at)

        cut_first = blocked is not None and blocked(start)
        if not (first_lost or cut_first):  # the common case: no recovery schedule to work out
            times, lost, first_rto = [start], [False], 1
        else:
            schedule = recovery_schedule(
                self.estimator.rto,
                self.estimator.srtt,
                packets_out=len(self._in_flight) + 1,
                tlp=self.config.tlp,
                config=self.config,
            )
            times, lost = [], []
            for j, offset in enumerate(schedule.offsets):
                at = start + offset
                drawn = first_lost if j == 0 else retransmission_lost()
                times.append(at)
                lost.append(drawn or (blocked is not None and blocked(at)))
                if not lost[-1]:
                    break
            first_rto = schedule.first_rto_index
            for at, rto_after in zip(times[first_rto:], schedule.rtos, strict=False):
                self._push(_Event(at, next(self._seq), None, rto_after))
            if lost[-1]:
                self.closed_at = start + schedule.give_up
                probe = schedule.probe and len(times) > 1
                return SegmentFate(
                    now, tuple(times), tuple(lost), probe, None, None, self.closed_at
                )
        probe = len(times) > 1 and schedule.probe

        arrived = times[-1] + one_way
        self._in_flight[index] = times[first_rto] if len(times) > first_rto else math.inf
        self._acked_at[index] = acked = arrived + self.ack_latency
        rtt = one_way + self.ack_latency + self.base_rtt
        valid = len(times) == 1 or self.config.timestamps  # Karn's rule without timestamps
        self._push(_Event(acked, next(self._seq), index, rtt if valid else None))
        delivered = max(arrived, self._last_delivery)
        self._last_delivery = delivered
        return SegmentFate(now, tuple(times), tuple(lost), probe, arrived, delivered, None)

    def _first_transmission(self, now: float) -> float:
        """When a message the application writes at ``now`` first goes on the wire.

        Segments leave in order, so never before the previous one. After an
        RTO the congestion window is one segment (Linux's Loss state): new
        data waits until every segment in recovery is acknowledged, and goes
        out with the RTO that the acknowledgement's RTT sample restored.
        """
        start = max(now, self._send_floor)
        self._advance(start)
        while recovering := [
            self._acked_at[i] for i, first_rto in self._in_flight.items() if first_rto <= start
        ]:
            start = max(recovering)
            self._advance(start)
        self._send_floor = start
        return start

    def _push(self, event: _Event) -> None:
        heapq.heappush(self._events, event)

    def _advance(self, now: float) -> None:
        """Apply the ACKs and RTO expiries due by ``now``, in time order."""
        estimator = self.estimator
        while self._events and self._events[0].at <= now:
            event = heapq.heappop(self._events)
            if event.acked is None:
                # Overlapping messages share one timer in Linux: take the larger
                # back-off rather than compounding both.
                if event.value is not None and event.value > estimator.rto:
                    estimator.rto = event.value
                    estimator.backoff += 1
                continue
            del self._in_flight[event.acked], self._acked_at[event.acked]
            if event.value is not None:
                estimator.sample(event.value, snd_una=event.acked + 1, snd_nxt=self._sent)
