"""The analytic side of the TCP loss-recovery model: delay distributions and tail bounds.

Role: closed forms the experiments print beside measurements as TCP's
prediction, e.g. the probability that a request/reply round trip outlasts a
client's timeout when every segment is lost with probability ``loss``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from transports.tcp_model.config import _probability
from transports.tcp_model.recovery import RecoverySchedule


def delay_distribution(
    schedule: RecoverySchedule, loss: float, latency: float = 0.0
) -> tuple[tuple[float, float], ...]:
    """``(delay, probability)`` of one segment's arrival: copy j is the first through
    with probability ``loss**j * (1 - loss)``. The missing mass,
    ``loss ** len(schedule.offsets)``, is the connection giving up."""
    p = _probability("loss", loss)
    return tuple((offset + latency, p**j * (1.0 - p)) for j, offset in enumerate(schedule.offsets))


def p_delay_exceeds(
    timeout: float, schedule: RecoverySchedule, loss: float, latency: float = 0.0
) -> float:
    """P(one segment arrives later than ``timeout`` after it was sent, or never).

    That is every copy sent in time being lost: ``loss ** n`` with ``n`` the
    number of transmissions at offsets ``<= timeout - latency``. Head-of-line
    waits behind earlier messages are not included.
    """
    p = _probability("loss", loss)
    return p ** sum(1 for offset in schedule.offsets if offset + latency <= timeout)


def p_sum_exceeds(timeout: float, *distributions: Sequence[tuple[float, float]]) -> float:
    """P(the sum of independent delays exceeds ``timeout``), e.g. a request and its reply.

    Each distribution comes from ``delay_distribution``; its missing mass
    (the connection gave up) counts as an infinite delay.
    """
    within = 0.0
    for atoms in itertools.product(*distributions):
        if sum(delay for delay, _ in atoms) <= timeout:
            within += math.prod(probability for _, probability in atoms)
    return min(1.0, max(0.0, 1.0 - within))
