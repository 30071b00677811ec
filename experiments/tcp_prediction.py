"""TCP's prediction for one retried operation when TCP itself recovers lost messages.

Role: the counterpart of ``experiments.analytic`` (the UDP model) for the
fault layer's ``tcp=retransmit``: a lost request or reply is not lost to the
application, it arrives late, after the tail loss probe and RTO back-off of
``transports.tcp_model`` (200, 400, 800 ms ... on loopback), and everything
behind it on the connection waits. Derived in ``experiments/ANALYSIS.md``
("TCP: the round trip decides everything").

One client keeps one connection (``on_timeout=same``) and sends attempt ``i``
of a call at ``s_i`` (``s_1 = 0``; a fixed or plain exponential policy, no
jitter) until a reply arrives or ``s_K + timeout_K`` passes. Every attempt
rides the same byte stream behind the first, and the server answers in
order, so the first reply the client reads is always the first attempt's: the
call's fate is its first round trip ``R`` = handshake wait (first call only)
+ request delay + reply delay:

* ``P(ok) = P(R <= s_K + timeout_K)``, ``unknown = 1 - P(ok)``;
* ``E[attempts] = sum_i P(R > s_i)``;
* every attempt sent is delivered and executed eventually (TCP gives up only
  after ~15 minutes), so ``phantom = unknown``, and under at-least-once
  ``E[executions] = E[attempts]``, ``duplicated = P(R > s_2)``; the other
  semantics execute once. ``maybe`` is ``K = 1``.

``R``'s distribution comes from the model's own pieces: the handshake
(``transports.tcp_model.connect``, every SYN/SYN-ACK loss pattern enumerated
with its probability) gives the first call's wait and each side's RTT sample;
the RTT estimator seeded with that sample and fed one zero sample per earlier
call gives each direction's ``recovery_schedule``; ``delay_distribution`` and
``p_sum_exceeds`` give ``P(R > t)``. A lost SYN-ACK makes the client's first
RTT sample ~1 s, so its retransmissions come 2.2 s late until later samples
pull the RTO down: that is why the call's index on its connection matters.

Assumptions: independent loss ``p`` of every segment, both directions; no
head-of-line blocking *between* calls (a call starts on a connection that
holds nothing of the previous call: false when a call gave up while TCP still
held one of its messages, as at timeouts below the 200 ms RTO); one RTT
sample per earlier call (retries add more); no other faults, no application
failures; the one-way latency ``latency``.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from experiments.analytic import SEMANTICS, Prediction
from transports.retry import RetryPolicy
from transports.tcp_model import (
    Draw,
    RttEstimator,
    connect,
    delay_distribution,
    p_sum_exceeds,
    recovery_schedule,
)

__all__ = [
    "SIM_LATENCY",
    "Connection",
    "Delays",
    "attempt_times",
    "calls_per_client",
    "handshakes",
    "predict_tcp",
    "round_trip_exceeds",
]

#: The simulator's one-way latency (``transports.sim.simulate``'s default);
#: loopback's is of the same order, far from any retransmission offset.
SIM_LATENCY = 100e-6
#: Loss patterns of the handshake less likely than this are not enumerated;
#: their mass counts as a round trip longer than any deadline.
HANDSHAKE_FLOOR = 1e-7


@dataclass(frozen=True)
class Connection:
    """One way a connection's handshake can go (``transports.tcp_model.Handshake``)."""

    established_at: float | None  # None: connect() failed (every SYN lost)
    client_rtt: float | None  # the request direction's first RTT sample
    server_rtt: float | None  # the reply direction's


Delays = tuple[tuple[float, float], ...]  # (delay, probability), as delay_distribution


class _NeedDraw(Exception):
    """The handshake asked for one more draw than the pattern being tried has."""

    def __init__(self, syn: bool) -> None:
        super().__init__(syn)
        self.syn = syn


def _scripted(pattern: tuple[bool, ...], *, syn: bool) -> Draw:
    copies = iter(pattern)

    def draw() -> float:
        lost = next(copies, None)
        if lost is None:
            raise _NeedDraw(syn)
        return 0.0 if lost else 1.0  # below any loss > 0 / not below any loss

    return draw


@functools.lru_cache(maxsize=64)
def handshakes(
    loss: float, floor: float = HANDSHAKE_FLOOR
) -> tuple[dict[Connection, float], float]:
    """Every SYN/SYN-ACK loss pattern's outcome with its probability, and the mass left out.

    Each SYN and SYN-ACK copy is lost with probability ``loss``, as the fault
    link's handshake draws them; a pattern grows one copy at a time, as far as
    ``connect`` asks, down to probability ``floor``.
    """
    _check_loss(loss)
    outcomes: defaultdict[Connection, float] = defaultdict(float)
    left_out = 0.0
    stack: list[tuple[tuple[bool, ...], tuple[bool, ...]]] = [((), ())]
    while stack:
        syns, synacks = stack.pop()
        prob = math.prod(loss if lost else 1.0 - loss for lost in syns + synacks)
        if prob < floor:
            left_out += prob
            continue
        try:
            done = connect(
                0.0,
                _scripted(syns, syn=True),
                _scripted(synacks, syn=False),
                syn_loss=loss,
                synack_loss=loss,
            )
        except _NeedDraw as need:
            for lost in (True, False):
                grown = ((*syns, lost), synacks) if need.syn else (syns, (*synacks, lost))
                stack.append(grown)
            continue
        outcomes[Connection(done.established_at, done.client_rtt, done.server_rtt)] += prob
    return dict(outcomes), left_out


@functools.lru_cache(maxsize=8192)
def _delays(rtt: float | None, samples: int, loss: float, latency: float) -> Delays:
    """One message's delay on a connection whose first RTT sample was ``rtt``, after
    ``samples`` more (zero: the fault layer sits above the network's latency)."""
    estimator = RttEstimator.after_handshake(rtt)
    for n in range(1, samples + 1):
        estimator.sample(0.0, snd_una=n, snd_nxt=n)
    schedule = recovery_schedule(estimator.rto, estimator.srtt, tlp=estimator.config.tlp)
    return delay_distribution(schedule, loss, latency)


@functools.lru_cache(maxsize=16384)
def _exceeds(t: float, request: Delays, reply: Delays) -> float:
    return 1.0 if t < 0.0 else p_sum_exceeds(t, request, reply)


def round_trip_exceeds(
    loss: float, times: Sequence[float], calls: Sequence[int], *, latency: float = SIM_LATENCY
) -> tuple[float, ...]:
    """For each ``t`` in ``times``: P(a call's first round trip is longer than ``t``).

    Averaged over every call of connections that make ``calls[c]`` calls
    each, the first call paying for the handshake; no head-of-line blocking
    between calls. A connection whose handshake fails, or whose loss pattern
    was left out, counts as never answering.
    """
    _check_loss(loss)
    if not calls or min(calls) < 0 or sum(calls) == 0:
        raise ValueError(f"calls must be counts >= 0, at least one of them > 0, got {calls!r}")
    if loss == 0.0:
        outcomes, left_out = {Connection(0.0, 0.0, 0.0): 1.0}, 0.0
    else:
        outcomes, left_out = handshakes(loss)
    # After the first call the handshake matters only through its RTT samples.
    later: defaultdict[Connection, float] = defaultdict(float)
    never = left_out
    for conn, prob in outcomes.items():
        if conn.established_at is None:
            never += prob
        else:
            later[Connection(0.0, conn.client_rtt, conn.server_rtt)] += prob
    total = [0.0] * len(times)
    previous: list[tuple[Delays, Delays]] | None = None
    for index in range(max(calls)):
        weight = sum(1 for n in calls if n > index)
        groups = outcomes if index == 0 else later
        delays = [
            (
                _delays(c.client_rtt, index, loss, latency),
                _delays(c.server_rtt, index, loss, latency),
            )
            for c in groups
        ]
        if index > 1 and delays == previous:
            # Every estimator has settled: the remaining calls repeat this one.
            weight = sum(n - index for n in calls if n > index)
        for (conn, prob), (request, reply) in zip(groups.items(), delays, strict=True):
            if conn.established_at is None:
                continue  # in ``never``
            wait = conn.established_at + 2.0 * latency if index == 0 else 0.0
            for k, t in enumerate(times):
                total[k] += weight * prob * _exceeds(t - wait, request, reply)
        for k in range(len(times)):
            total[k] += weight * never
        if index > 1 and delays == previous:
            break
        previous = delays
    n = sum(calls)
    return tuple(min(1.0, value / n) for value in total)


def _check_loss(loss: float) -> None:
    if isinstance(loss, bool) or not isinstance(loss, int | float) or not 0.0 <= loss < 1.0:
        raise ValueError(f"loss must be a probability below 1 (TCP must get through), got {loss!r}")


def attempt_times(policy: RetryPolicy, max_attempts: int) -> tuple[tuple[float, ...], float] | None:
    """When each attempt of a call is sent while no reply came, and when the call gives up.

    None for a policy whose times are random (jittered backoff) or depend on
    other calls (``adaptive``).
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts!r}")
    if policy.jittered or policy.adaptive:
        return None
    schedule = policy.schedule()
    sends = [0.0]
    for attempt in range(2, max_attempts + 1):
        previous = attempt - 1
        sends.append(
            sends[-1] + schedule.attempt_timeout(previous) + schedule.delay_before(attempt)
        )
    return tuple(sends), sends[-1] + schedule.attempt_timeout(max_attempts)


def calls_per_client(ops: int, clients: int) -> tuple[int, ...]:
    """How ``experiments.workload.plan_operations`` spreads ``ops`` over ``clients``."""
    if ops < 1 or clients < 1:
        raise ValueError("ops and clients must be at least 1")
    return tuple(ops // clients + (index < ops % clients) for index in range(clients))


def predict_tcp(
    semantics: str,
    loss: float,
    max_attempts: int,
    policy: RetryPolicy,
    calls: Sequence[int],
    *,
    latency: float = SIM_LATENCY,
) -> Prediction | None:
    """The outcome of one call over TCP (see the module docstring); None if ``policy`` is random.

    ``calls``: the calls each connection makes (``calls_per_client``);
    ``max_attempts`` is taken as 1 for ``maybe``.
    """
    if semantics not in SEMANTICS:
        raise ValueError(f"unknown semantics {semantics!r}; choose one of: {', '.join(SEMANTICS)}")
    attempts_allowed = 1 if semantics == "maybe" else max_attempts
    times = attempt_times(policy, attempts_allowed)
    if times is None:
        return None
    sends, deadline = times
    exceeds = round_trip_exceeds(loss, (*sends[1:], deadline), calls, latency=latency)
    unknown = exceeds[-1]
    attempts = 1.0 + math.fsum(exceeds[:-1])
    at_least_once = semantics == "at-least-once"
    return Prediction(
        ok=1.0 - unknown,
        failed=0.0,
        unknown=unknown,
        executions=attempts if at_least_once else 1.0,
        duplicated=exceeds[0] if at_least_once and attempts_allowed > 1 else 0.0,
        phantom=unknown,
        lost=0.0,
        attempts=attempts,
    )
