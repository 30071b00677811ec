"""Client retry policies: per-attempt timeouts, backoff delays and retry throttling.

Role: the client endpoint asks this package *how long* to wait for each attempt's
reply and *how long* to back off before the next attempt; it owns the actual
waiting, the sockets and the attempt counter. Like aioquic's ``quic/recovery.py``
nothing here reads a clock or sleeps: every duration is plain arithmetic on
numbers passed in, so the whole package is pure, synchronous and deterministic
given a seeded ``random.Random``.

Three independent pieces:

* :class:`RetryPolicy` / :class:`RetrySchedule` (``policy``, parsed by
  ``parse``) -- the policy named on the command line (``--policy NAME``) and
  its per-call state. Backoff delays follow Marc Brooker, "Exponential Backoff
  and Jitter", AWS Architecture Blog, 2015 (plain exponential, full jitter,
  equal jitter, decorrelated jitter).
* :class:`RtoEstimator` (``rto``) -- the retransmission timeout of RFC 6298,
  "Computing TCP's Retransmission Timer" (SRTT/RTTVAR smoothing, section 5.5
  back-off), used by the ``adaptive`` policy. One per client, shared by its calls.
* :class:`RetryBudget` (``budget``) -- client-wide retry throttling from gRPC's
  gRFC A6 ("gRPC Retry Design", section "Throttling Retry Attempts and Hedged
  RPCs"), which stops a client from multiplying load when most attempts are failing.

``durations`` holds what they share: checking, printing and parsing seconds.

Timeline of one call with ``max_attempts = 3`` (``tN`` = ``attempt_timeout(N)``,
``dN`` = ``delay_before(N)``)::

    send #1 --t1--> (no reply) --d2--> send #2 --t2--> (no reply) --d3--> send #3 --t3--> give up

A connection error (e.g. TCP reset) ends an attempt before its timeout and is
followed by the same backoff delay.
"""

from transports.retry.budget import RetryBudget
from transports.retry.parse import parse_policy
from transports.retry.policy import (
    ADAPTIVE,
    DECORRELATED,
    DEFAULT_BASE,
    DEFAULT_CAP,
    DEFAULT_TIMEOUT,
    EXPO,
    EXPO_EQUAL,
    EXPO_FULL,
    FIXED,
    POLICY_NAMES,
    OnTimeout,
    RetryPolicy,
    RetrySchedule,
)
from transports.retry.rto import RtoEstimator

__all__ = [
    "ADAPTIVE",
    "DECORRELATED",
    "DEFAULT_BASE",
    "DEFAULT_CAP",
    "DEFAULT_TIMEOUT",
    "EXPO",
    "EXPO_EQUAL",
    "EXPO_FULL",
    "FIXED",
    "POLICY_NAMES",
    "OnTimeout",
    "RetryBudget",
    "RetryPolicy",
    "RetrySchedule",
    "RtoEstimator",
    "parse_policy",
]
