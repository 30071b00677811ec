"""``FaultLink``: the seeded decisions for one direction of one link, no I/O.

``apply(data, now)`` returns the ``Verdict`` a driver carries out. It draws
what the network does to the message (``Fate``: lost, reset, delayed,
reordered, duplicated, corrupted), then applies the transport's rules:
datagrams are dropped, duplicated or overtaken; a byte stream never reorders
and absorbs duplicates, and a lost segment either breaks the connection
(``tcp=reset``) or is retransmitted as Linux does (``tcp=retransmit``,
``transports.tcp_model``), holding back every later message.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from transports.faults.partition import Cut
from transports.faults.spec import LinkFaults, TcpRecovery
from transports.tcp_model import (
    Handshake,
    RetransmittingStream,
    RttEstimator,
    retransmit_draws,
)
from transports.tcp_model import connect as tcp_connect


class Direction(enum.Enum):
    """Which way a message travels on a client's link."""

    REQUEST = "request"  # client -> server
    REPLY = "reply"  # server -> client


@dataclass(frozen=True)
class Delivery:
    """One copy of a message arriving at time ``at`` with (possibly corrupted) ``data``."""

    at: float
    data: bytes


@dataclass(frozen=True)
class Verdict:
    """What the link does with one message.

    ``deliveries`` is empty when the message is dropped (or the stream reset);
    ``reset`` tells a stream driver to break the connection at this message;
    ``events`` names what happened, in a fixed order, for counters.
    """

    deliveries: tuple[Delivery, ...]
    reset: bool
    events: tuple[str, ...]

    @property
    def delivered(self) -> bool:
        return bool(self.deliveries)


def label_for(role: str, index: int, direction: Direction) -> str:
    """Conventional link label: ``label_for("client", 3, Direction.REPLY) == "client3/reply"``."""
    return f"{role}{index}/{direction.value}"


def corrupt_bits(data: bytes, rng: random.Random, nbits: int) -> bytes:
    """Return ``data`` with ``nbits`` distinct random bits flipped (never equal to ``data``)."""
    total = len(data) * 8
    if not 1 <= nbits <= total:
        raise ValueError(f"nbits must be in [1, {total}] for {len(data)} bytes, got {nbits}")
    out = bytearray(data)
    # Distinct positions: flipping the same bit twice would undo the damage.
    for position in rng.sample(range(total), nbits):
        out[position >> 3] ^= 1 << (position & 7)
    return bytes(out)


#: The round trip of the network below the fault layer, as TCP's RTT estimator
#: sees it: loopback or a veth pair (~0.1 ms each way; the simulator's default
#: latency is the same). It matters through the RTO's rounding to whole
#: jiffies: an RTT of 0 gives exactly 200 ms, a real one 204 ms (HZ=250), as
#: the kernel measures; with exactly 200 ms a probe would land on the deadline
#: of a 100 ms client timeout's second attempt.
NETWORK_RTT = 200e-6
_ONE_WAY = NETWORK_RTT / 2


@dataclass(frozen=True)
class Fate:
    """What the network does to one message, before the transport's rules apply.

    ``lost``: its (first) transmission is lost. ``retransmission_lost``: called
    once per later copy TCP sends (``tcp=retransmit``), True when that copy is
    lost too. ``reset``: the stream is reset at this message. ``offset``: delay
    on the way, in seconds. ``corrupt_seed``: flip bits drawn from this seed
    (None: intact).
    """

    lost: bool
    retransmission_lost: Callable[[], bool]
    reset: bool = False
    offset: float = 0.0
    reordered: bool = False
    duplicated: bool = False
    corrupt_seed: int | None = None


class FaultLink:
    """Fault decisions for one direction of one link (one client's connection or datagram flow).

    Every call to ``apply`` makes the same eight draws from a private RNG seeded
    with ``f"{seed}/{label}"``, whatever faults are enabled ("common random
    numbers"): switching ``dup`` on does not change which messages are lost, and
    the messages lost at ``loss=0.1`` are a subset of those lost at ``loss=0.2``.
    A TCP retransmission's fate comes from a sub-generator of the message, so
    the main sequence keeps its eight draws however many copies TCP sends.

    ``decide`` draws a message's ``Fate``; the transport's rules (the rest of
    ``apply``) turn it into a ``Verdict``. A subclass that decides differently
    (``transports.schedule.ScheduledLink``) keeps the same rules.
    """

    def __init__(
        self,
        faults: LinkFaults,
        seed: int,
        label: str,
        *,
        stream: bool = False,
        origin: float | None = None,
    ) -> None:
        self.faults = faults
        self.seed = seed
        self.label = label
        self.stream = stream
        #: Offset of a reordered message and of a duplicate's second copy.
        self.gap = faults.reorder_gap
        self.counters: collections.Counter[str] = collections.Counter()
        # str seeds are hashed with SHA-512 by random.Random: stable across runs,
        # unlike hash(), which PYTHONHASHSEED randomises.
        self._rng = random.Random(f"{seed}/{label}")
        self._bad = False  # Gilbert-Elliott state: False = good
        self._fifo_floor = -math.inf  # stream: last delivery time on this connection
        #: Stream: bumped whenever a new connection starts (a connect, a reset):
        #: drivers keep each connection's deliveries in order by it.
        self.streams = 0
        self._tcp: RetransmittingStream | None = None  # tcp=retransmit: this connection's
        self._connections = 0  # stream: connections opened (names their handshake draws)
        #: RTT sample of the latest handshake; the fault layer sits above the
        #: network latency, so a handshake that lost nothing measures ~0.
        self._handshake_rtt: float | None = NETWORK_RTT
        #: When the latest message this link let through arrives (``-inf``: none
        #: yet): a closing client lets the network deliver what it still holds.
        self.last_delivery_at = -math.inf
        #: Timed faults (a partition) count time from here, in the driver's clock:
        #: the run's start when the driver gives it (0 in the simulator), else the
        #: time of this link's first message (or connection).
        self.origin = origin
        self._window = _partition_window(faults, label)
        self._cut: Callable[[float], bool] | None = None if self._window is None else self._cut_at
        self._passthrough = faults.is_zero
        #: Every message is delivered at once, untouched (no fault can act, and
        #: ``decide`` not overridden): drivers may then skip building a
        #: ``Verdict`` and call ``count_passthrough`` instead.
        self.passthrough = self._passthrough and type(self).decide is FaultLink.decide

    @property
    def retransmits(self) -> bool:
        """A stream link whose lost messages TCP retransmits (``tcp=retransmit``)."""
        return self.stream and self.faults.tcp is TcpRecovery.RETRANSMIT

    def decide(self) -> Fate:
        """Draw what the network does to the next message (the fixed eight draws)."""
        faults = self.faults
        draw = self._rng.random
        # The fixed draw order (never skip one; see the class docstring).
        u_state = draw()
        u_loss = draw()
        u_reset = draw()
        u_reorder = draw()
        u_dup = draw()
        u_corrupt = draw()
        u_jitter = draw()
        message_seed = self._rng.getrandbits(64)
        if faults.ge_p > 0.0:
            self._bad = (u_state >= faults.ge_r) if self._bad else (u_state < faults.ge_p)
        loss = faults.ge_loss if self._bad else faults.loss
        offset = faults.delay + faults.jitter * (2.0 * u_jitter - 1.0)
        return Fate(
            lost=u_loss < loss,
            retransmission_lost=_retransmission_draws(message_seed, loss),
            reset=u_reset < faults.reset,
            offset=offset if offset > 0.0 else 0.0,
            reordered=u_reorder < faults.reorder,
            duplicated=u_dup < faults.dup,
            corrupt_seed=message_seed if u_corrupt < faults.corrupt else None,
        )

    def _cut_at(self, now: float) -> bool:
        """Does the partition cut what this link sends at ``now``?"""
        assert self._window is not None and self.origin is not None
        return self._window(now - self.origin)

    def apply(self, data: bytes, now: float) -> Verdict:
        """Decide the fate of one message sent at ``now``."""
        if self.origin is None:
            self.origin = now
        self.counters["messages"] += 1
        if self.passthrough:
            # A link's faults never change, so skipping the draws cannot shift any
            # later decision of this link, and other links have their own RNGs.
            return Verdict((Delivery(now, data),), False, ())
        fate = self.decide()
        if self._cut is not None and not self.retransmits and self._cut(now):
            # A partition: the network loses it whatever the draws said (which
            # were still made, so later decisions keep their place).
            fate = dataclasses.replace(fate, lost=True)
        if self.stream:
            verdict = self._stream_rules(fate, data, now)
        else:
            verdict = self._datagram_rules(fate, data, now)
        self.counters.update(verdict.events)
        for delivery in verdict.deliveries:
            self.last_delivery_at = max(self.last_delivery_at, delivery.at)
        return verdict

    def connect(self, now: float, reply: FaultLink | None = None) -> Handshake:
        """A new connection opens at ``now``: when its three-way handshake completes.

        This link carries the SYNs, ``reply`` (the other direction; this link
        when None) the SYN-ACKs; both start the new connection's stream (no
        message held, a fresh RTT estimator). Under ``tcp=retransmit`` each
        SYN and SYN-ACK is lost with its link's loss probability, drawn from a
        generator of this connection's own, so the messages' draws do not
        move; under ``tcp=reset`` the handshake always completes at once.
        """
        self._connections += 1
        back = self if reply is None else reply
        for link in (self, back):
            if link.origin is None:
                link.origin = now
        for link in {self, back}:
            link._new_stream()
        if not self.retransmits or (self.faults.loss == 0.0 and back.faults.loss == 0.0):
            done = tcp_connect(
                now, _no_loss, _no_loss, syn_loss=0.0, synack_loss=0.0, latency=_ONE_WAY
            )
        else:
            rng = random.Random(f"{self.seed}/{self.label}/connection{self._connections}")
            syn_loss, synack_loss = self.faults.loss, back.faults.loss
            done = tcp_connect(
                now,
                rng.random,
                rng.random,
                syn_loss=syn_loss,
                synack_loss=synack_loss,
                latency=_ONE_WAY,
            )
        if back is not self:
            back._handshake_rtt = done.server_rtt
        self._handshake_rtt = done.client_rtt
        return done

    def _new_stream(self) -> None:
        """Forget the connection: the next message rides a new one."""
        self.streams += 1
        self._fifo_floor = -math.inf
        self._tcp = None

    def _datagram_rules(self, fate: Fate, data: bytes, now: float) -> Verdict:
        if fate.lost:
            cut = self._cut is not None and self._cut(now)
            return Verdict((), False, ("drop", "partition") if cut else ("drop",))
        at = now + fate.offset
        events: list[str] = []
        if fate.reordered:
            at += self.gap
            events.append("reorder")
        if fate.duplicated:
            events.append("dup")
        data = self._damage(fate, data, events)
        if fate.offset > 0.0:
            events.append("delay")
        first = Delivery(at, data)
        # Both copies carry the same bytes: duplication happens after the damage.
        if fate.duplicated:
            return Verdict((first, Delivery(at + self.gap, data)), False, tuple(events))
        return Verdict((first,), False, tuple(events))

    def _stream_rules(self, fate: Fate, data: bytes, now: float) -> Verdict:
        if fate.reset or (fate.lost and not self.retransmits):
            # The connection breaks here; the next message rides a new one.
            self._new_stream()
            return Verdict((), True, ("drop", "reset") if fate.lost else ("reset",))
        events: list[str] = []
        if self.retransmits:
            if self._tcp is None:  # a new connection: its RTO starts from the handshake's RTT
                estimator = RttEstimator.after_handshake(self._handshake_rtt)
                self._tcp = RetransmittingStream(0.0, base_rtt=NETWORK_RTT, estimator=estimator)
            segment = self._tcp.transmit(
                now, fate.lost, fate.retransmission_lost, latency=fate.offset, blocked=self._cut
            )
            if segment.delivered_at is None:  # TCP gave up: the connection aborts
                self._new_stream()
                return Verdict((), True, ("drop", "reset", "gave_up"))
            at = segment.delivered_at
            if segment.retransmissions:
                events.append("retransmitted")
            if self._cut is not None and self._cut(segment.transmissions[0]):
                events.append("partition")  # held by the partition until a copy got through
            if segment.arrived_at is not None and at > segment.arrived_at:
                events.append("fifo_hold")  # held behind an earlier, retransmitted message
        else:
            at = now + fate.offset
        # TCP's sequence numbers absorb duplicates and reordering.
        if fate.reordered:
            events.append("absorbed_reorder")
        if fate.duplicated:
            events.append("absorbed_dup")
        if at < self._fifo_floor:
            at = self._fifo_floor  # a byte stream never overtakes itself
            events.append("fifo_hold")
        self._fifo_floor = at
        data = self._damage(fate, data, events)
        if fate.offset > 0.0:
            events.append("delay")
        return Verdict((Delivery(at, data),), False, tuple(events))

    @staticmethod
    def _damage(fate: Fate, data: bytes, events: list[str]) -> bytes:
        if fate.corrupt_seed is None or not data:
            return data
        # A sub-RNG keeps the main draw count fixed however many bits flip.
        bit_rng = random.Random(fate.corrupt_seed)
        events.append("corrupt")
        return corrupt_bits(data, bit_rng, min(bit_rng.randint(1, 3), len(data) * 8))

    def count_passthrough(self) -> None:
        """Count one message of a ``passthrough`` link, as ``apply`` would."""
        self.counters["messages"] += 1

    def __repr__(self) -> str:
        mode = "stream" if self.stream else "datagram"
        return f"FaultLink({self.faults}, seed={self.seed}, label={self.label!r}, {mode})"


_CLIENT_LABEL = re.compile(r"[A-Za-z_]*(\d+)/(request|reply)")


def _partition_window(faults: LinkFaults, label: str) -> Callable[[float], bool] | None:
    """Whether the partition cuts what this link sends at time ``t`` from its origin.

    None: it never cuts anything on this link.

    The link's client index and direction come from its label
    (``label_for``: ``client3/reply``); a partition for chosen clients cuts
    nothing on a link whose label names no client.
    """
    partition = faults.partition
    match = _CLIENT_LABEL.fullmatch(label)
    reply = match is not None and match[2] == Direction.REPLY.value
    client = int(match[1]) if match is not None else None
    if match is None and partition.cut is not Cut.BOTH:
        return None  # which direction this link carries is unknown
    if not partition.applies(reply, client):
        return None
    window = partition.window
    return lambda t: window(t) is not None


def _retransmission_draws(message_seed: int, loss: float) -> Callable[[], bool]:
    """Whether each later copy of a message is lost: its own sub-generator, built lazily."""
    draw = retransmit_draws(message_seed)
    return lambda: draw() < loss


def _no_loss() -> float:
    return 1.0  # a draw no loss probability exceeds


def link_pair(
    faults: LinkFaults, seed: int, role: str, index: int, *, stream: bool = False
) -> tuple[FaultLink, FaultLink]:
    """The (REQUEST, REPLY) links of one client, labelled with ``label_for``."""
    return (
        FaultLink(faults, seed, label_for(role, index, Direction.REQUEST), stream=stream),
        FaultLink(faults, seed, label_for(role, index, Direction.REPLY), stream=stream),
    )
