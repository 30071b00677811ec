"""TCP connection set-up: SYN and SYN-ACK loss, retransmission and failure, as Linux does it.

Role: ``connect`` plays the three-way handshake on virtual time from seeded
draws: the client's SYN retransmission timer (linear, then exponential), the
server's SYN-ACK timer and its answers to duplicate SYNs, and the RTT samples
each side takes from the exchange (Karn's rule without timestamps).
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

from transports.tcp_model.config import (
    DEFAULT_CONFIG,
    TCP_INVALID_RATELIMIT,
    Draw,
    TcpConfig,
    _duration,
    model_timeout,
)


@dataclass(frozen=True)
class Handshake:
    """The three-way handshake of one connection, from the client's ``connect()``."""

    started_at: float
    established_at: float | None  # the first SYN-ACK reached the client
    failed_at: float | None  # the client gave up (ETIMEDOUT)
    syns: tuple[float, ...]
    syn_lost: tuple[bool, ...]
    synacks: tuple[float, ...]
    synack_lost: tuple[bool, ...]
    client_rtt: float | None  # valid RTT sample for the client's sender, if any
    server_rtt: float | None  # valid RTT sample for the server's sender, if any

    @property
    def established(self) -> bool:
        return self.established_at is not None


def syn_schedule(config: TcpConfig = DEFAULT_CONFIG) -> tuple[tuple[float, ...], float]:
    """The client's SYN send offsets and the offset at which ``connect()`` fails.

    The SYN RTO starts at 1 s and stays there for ``syn_linear_timeouts``
    expiries before doubling; the client fails after ``syn_retries +
    syn_linear_timeouts`` retransmissions or ``model_timeout(syn_retries, 1 s)``
    (``tcp_write_timeout()``). Defaults: SYNs at 0, 1, 2, 3, 4, 5, 7, 11, 19, 35,
    67 s, failure at 131 s.
    """
    offsets = [0.0]
    rto = config.timeout_init
    budget = model_timeout(config.syn_retries, config.timeout_init, config.rto_max)
    max_retransmits = config.syn_retries + config.syn_linear_timeouts
    t = 0.0
    while True:
        t += rto
        retransmits = len(offsets) - 1
        if retransmits >= max_retransmits or (retransmits and t >= budget):
            return tuple(offsets), t
        offsets.append(t)
        if len(offsets) - 1 > config.syn_linear_timeouts:  # icsk_backoff > linear timeouts
            rto = min(2.0 * rto, config.rto_max)


_SYNACK_ARRIVES, _SYN_ARRIVES, _SERVER_TIMER, _CLIENT_FAILS, _CLIENT_SENDS = range(5)


def connect(
    now: float,
    syn_draws: Draw,
    synack_draws: Draw,
    *,
    syn_loss: float,
    synack_loss: float,
    latency: float = 0.0,
    back_latency: float | None = None,
    config: TcpConfig = DEFAULT_CONFIG,
) -> Handshake:
    """Run the handshake: client SYNs on ``syn_schedule``, the server's SYN-ACKs.

    The server answers the SYN that creates its request socket and every
    duplicate SYN (at most one per ``tcp_invalid_ratelimit``, which re-arms
    its timer), and retransmits on its own timer at 1, 2, 4, ... s,
    ``synack_retries`` times before dropping the request
    (``reqsk_timer_handler()``, ``tcp_check_req()``). The client is up when the
    first SYN-ACK arrives; the final ACK is taken never to be lost (the first
    data segment carries it anyway). Each SYN is lost when ``syn_draws() <
    syn_loss``, each SYN-ACK when ``synack_draws() < synack_loss``.

    RTT samples: with timestamps each side times the segment the peer's echo
    names. The SYN-ACK echoes the SYN that created the request (duplicate SYNs
    do not update ``ts_recent``), so after a lost SYN-ACK the client samples
    about 1 s and its RTO starts near 3 s. Without timestamps (Karn's rule) a
    side gets no sample if it retransmitted, and falls back to a 3 s RTO.
    """
    back = latency if back_latency is None else _duration("back_latency", back_latency)
    _duration("latency", latency)
    offsets, fail_offset = syn_schedule(config)
    events: list[tuple[float, int, int, int]] = []  # (at, kind, seq, data)
    seq = itertools.count()

    def push(at: float, kind: int, data: int = 0) -> None:
        heapq.heappush(events, (at, kind, next(seq), data))

    for offset in offsets:
        push(now + offset, _CLIENT_SENDS)
    push(now + fail_offset, _CLIENT_FAILS)
    syns: list[float] = []
    syn_lost: list[bool] = []
    synacks: list[float] = []
    synack_lost: list[bool] = []
    echoes: list[float] = []  # the SYN time each SYN-ACK echoes (its request's first SYN)
    request: float | None = None  # send time of the SYN that created the request socket
    num_timeout = num_retrans = timer = 0
    last_oow = -math.inf

    def send_synack(at: float, echo: float) -> None:
        synacks.append(at)
        echoes.append(echo)
        synack_lost.append(synack_draws() < synack_loss)
        if not synack_lost[-1]:
            push(at + back, _SYNACK_ARRIVES, len(synacks) - 1)

    def rearm(at: float) -> None:
        nonlocal timer
        timer += 1
        push(at + min(config.timeout_init * 2**num_timeout, config.rto_max), _SERVER_TIMER, timer)

    while events:
        at, kind, _, data = heapq.heappop(events)
        if kind == _CLIENT_SENDS:
            syns.append(at)
            syn_lost.append(syn_draws() < syn_loss)
            if not syn_lost[-1]:
                push(at + latency, _SYN_ARRIVES, len(syns) - 1)
        elif kind == _SYN_ARRIVES:
            if request is None:
                request, num_timeout, num_retrans, last_oow = syns[data], 0, 0, -math.inf
                send_synack(at, request)
                rearm(at)
            elif at - last_oow >= TCP_INVALID_RATELIMIT:
                last_oow = at
                num_retrans += 1
                send_synack(at, request)
                rearm(at)
        elif kind == _SERVER_TIMER:
            if data != timer or request is None:
                continue  # a timer re-armed since, or a dropped request
            if num_timeout >= config.synack_retries:
                request = None
                continue
            num_retrans += 1
            num_timeout += 1
            send_synack(at, request)
            rearm(at)
        elif kind == _SYNACK_ARRIVES:
            acked_at = at + latency  # when the final ACK reaches the server
            client_rtt = at - echoes[data]
            server_rtt = acked_at - synacks[data]
            if not config.timestamps:  # Karn's rule: nothing retransmitted may be timed
                client_rtt_valid = len(syns) == 1
                server_rtt_valid = num_retrans == 0
            else:
                client_rtt_valid = server_rtt_valid = True
            return Handshake(
                now,
                at,
                None,
                tuple(syns),
                tuple(syn_lost),
                tuple(synacks),
                tuple(synack_lost),
                client_rtt if client_rtt_valid else None,
                server_rtt if server_rtt_valid else None,
            )
        else:  # _CLIENT_FAILS
            break
    return Handshake(
        now,
        None,
        now + fail_offset,
        tuple(syns),
        tuple(syn_lost),
        tuple(synacks),
        tuple(synack_lost),
        None,
        None,
    )
