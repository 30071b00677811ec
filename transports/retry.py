"""Client retry policies: per-attempt timeouts, backoff delays and retry throttling.

Role: the client endpoint asks this module *how long* to wait for each attempt's
reply and *how long* to back off before the next attempt; it owns the actual
waiting, the sockets and the attempt counter. Like aioquic's ``quic/recovery.py``
nothing here reads a clock or sleeps: every duration is plain arithmetic on
numbers passed in, so the whole module is pure, synchronous and deterministic
given a seeded ``random.Random``.

Three independent pieces:

* :class:`RetryPolicy` / :class:`RetrySchedule` -- the policy named on the
  command line (``--policy NAME``) and its per-call state. Backoff delays follow
  Marc Brooker, "Exponential Backoff and Jitter", AWS Architecture Blog, 2015
  (plain exponential, full jitter, equal jitter, decorrelated jitter).
* :class:`RtoEstimator` -- the retransmission timeout of RFC 6298, "Computing
  TCP's Retransmission Timer" (SRTT/RTTVAR smoothing, section 5.5 back-off),
  used by the ``adaptive`` policy. One per client, shared by its calls.
* :class:`RetryBudget` -- client-wide retry throttling from gRPC's gRFC A6
  ("gRPC Retry Design", section "Throttling Retry Attempts and Hedged RPCs"),
  which stops a client from multiplying load when most attempts are failing.

Timeline of one call with ``max_attempts = 3`` (``tN`` = ``attempt_timeout(N)``,
``dN`` = ``delay_before(N)``)::

    send #1 --t1--> (no reply) --d2--> send #2 --t2--> (no reply) --d3--> send #3 --t3--> give up

A connection error (e.g. TCP reset) ends an attempt before its timeout and is
followed by the same backoff delay.
"""

from __future__ import annotations

import enum
import math
import random
import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ADAPTIVE",
    "DECORRELATED",
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

FIXED: Final = "fixed"
EXPO: Final = "expo"
EXPO_FULL: Final = "expo-full"
EXPO_EQUAL: Final = "expo-equal"
DECORRELATED: Final = "decorrelated"
ADAPTIVE: Final = "adaptive"

#: Every valid ``--policy`` name, in the order tables should list them.
POLICY_NAMES: Final[tuple[str, ...]] = (FIXED, EXPO, EXPO_FULL, EXPO_EQUAL, DECORRELATED, ADAPTIVE)

# Policies that sleep a Brooker-style backoff delay between attempts.
_BACKOFF_POLICIES: Final = frozenset({EXPO, EXPO_FULL, EXPO_EQUAL, DECORRELATED})
# Policies whose delays are random draws: they need a caller-supplied rng.
_JITTERED_POLICIES: Final = frozenset({EXPO_FULL, EXPO_EQUAL, DECORRELATED})

DEFAULT_TIMEOUT: Final = 0.05
DEFAULT_BASE: Final = 0.005
DEFAULT_CAP: Final = 1.0


def _check_positive(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise."""
    # bool is an int subclass; ``timeout=True`` is a bug, not one second.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    result = float(value)
    if not math.isfinite(result) or result <= 0.0:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return result


def _format_duration(seconds: float) -> str:
    """Short human form for captions: 1s, 1.5s, 20ms, 250us."""
    if seconds >= 1.0:
        return f"{seconds:g}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:g}ms"
    return f"{seconds * 1e6:g}us"


def _capped_growth(base: float, factor: float, k: int, cap: float) -> float:
    """``min(cap, base * factor**k)`` without overflowing for large ``k``."""
    try:
        grown = base * factor**k
    except OverflowError:  # float ** raises instead of returning inf
        return cap
    return min(cap, grown)


class OnTimeout(enum.Enum):
    """What a stream (TCP) client does with its connection when an attempt times out.

    It decides whether the request that timed out can still execute: TCP
    keeps retransmitting what it was given until it is acknowledged or the
    connection dies.
    """

    #: Write the retry on the same connection, behind whatever TCP still holds
    #: (the request that timed out may be waiting for its retransmission):
    #: when the loss heals, both arrive, in order. What a client that simply
    #: writes again does.
    SAME = "same"
    #: Abort the connection (RST) and send the retry on a new one. Whatever the
    #: old connection had not yet delivered dies with it (the server's kernel
    #: never hands it to the application); a request already delivered still
    #: executes. Costs a handshake per timeout.
    RECONNECT = "reconnect"


@dataclass(frozen=True)
class RetryPolicy:
    """A named retry policy and its parameters (seconds); validated on construction.

    * ``fixed``: every attempt waits ``timeout``; retransmit at once on timeout.
    * ``expo``: waits ``timeout``; before attempt n >= 2 sleeps
      ``min(cap, base * 2**(n-2))`` (no jitter).
    * ``expo-full``: sleeps ``uniform(0, v)`` with v as for ``expo`` (Brooker's
      "Full Jitter").
    * ``expo-equal``: sleeps ``v/2 + uniform(0, v/2)`` ("Equal Jitter").
    * ``decorrelated``: sleeps ``min(cap, uniform(base, 3 * prev))`` where
      ``prev`` is the previous sleep, initially ``base`` ("Decorrelated Jitter").
    * ``adaptive``: each attempt waits the shared :class:`RtoEstimator`'s current
      RTO (RFC 6298, backs off on timeouts); no extra backoff delay. ``timeout``,
      ``base`` and ``cap`` are unused.

    ``base`` and ``cap`` are only checked against each other (``base <= cap``)
    for the four backoff policies, where they mean something. ``on_timeout``
    says what a TCP client does with its connection when an attempt times out
    (``OnTimeout``); UDP has no connection to keep or drop.
    """

    name: str
    timeout: float = DEFAULT_TIMEOUT
    base: float = DEFAULT_BASE
    cap: float = DEFAULT_CAP
    on_timeout: OnTimeout = OnTimeout.SAME

    def __post_init__(self) -> None:
        if self.name not in POLICY_NAMES:
            raise ValueError(
                f"unknown retry policy {self.name!r}; valid names: {', '.join(POLICY_NAMES)}"
            )
        # Normalise ints to floats so equality and describe() do not depend on
        # whether the caller typed 1 or 1.0 (frozen: go through object).
        for field_name in ("timeout", "base", "cap"):
            object.__setattr__(
                self, field_name, _check_positive(field_name, getattr(self, field_name))
            )
        if self.name in _BACKOFF_POLICIES and self.base > self.cap:
            raise ValueError(
                f"{self.name}: base ({_format_duration(self.base)}) must not exceed "
                f"cap ({_format_duration(self.cap)})"
            )

    @classmethod
    def from_name(
        cls,
        name: str,
        *,
        timeout: float | None = None,
        base: float | None = None,
        cap: float | None = None,
        on_timeout: OnTimeout = OnTimeout.SAME,
    ) -> RetryPolicy:
        """Build policy ``name`` (case-insensitive) with defaults for unset parameters."""
        return cls(
            name=name.strip().lower(),
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            base=DEFAULT_BASE if base is None else base,
            cap=DEFAULT_CAP if cap is None else cap,
            on_timeout=on_timeout,
        )

    @property
    def adaptive(self) -> bool:
        """True when attempt timeouts come from an :class:`RtoEstimator`."""
        return self.name == ADAPTIVE

    @property
    def jittered(self) -> bool:
        """True when delays are random draws (a seeded rng is required)."""
        return self.name in _JITTERED_POLICIES

    def describe(self, rto: RtoEstimator | None = None) -> str:
        """Short caption, e.g. ``expo-full(timeout=20ms, base=5ms, cap=1s)``.

        Only the parameters the policy uses are shown, and ``on-timeout`` only
        when it is not the default; for ``adaptive`` pass the estimator to show
        its bounds.
        """
        caption = self._describe_timing(rto)
        if self.on_timeout is OnTimeout.SAME:
            return caption
        return f"{caption[:-1]}, on-timeout={self.on_timeout.value})"

    def _describe_timing(self, rto: RtoEstimator | None) -> str:
        if self.name == FIXED:
            return f"fixed(timeout={_format_duration(self.timeout)})"
        if self.name == ADAPTIVE:
            if rto is None:
                return "adaptive(RFC 6298 RTO)"
            return (
                f"adaptive(initial={_format_duration(rto.initial)}, "
                f"min={_format_duration(rto.min_rto)}, max={_format_duration(rto.max_rto)})"
            )
        return (
            f"{self.name}(timeout={_format_duration(self.timeout)}, "
            f"base={_format_duration(self.base)}, cap={_format_duration(self.cap)})"
        )

    def max_delay_before(self, attempt: int) -> float:
        """Largest backoff delay ``delay_before(attempt)`` can ever return."""
        _check_attempt(attempt)
        if attempt == 1 or self.name not in _BACKOFF_POLICIES:
            return 0.0
        k = attempt - 2
        if self.name == DECORRELATED:
            # Each draw is at most 3x the previous one (capped), and the first
            # "previous" is base, so delay_n <= min(cap, base * 3**(n-1)).
            return _capped_growth(self.base, 3.0, k + 1, self.cap)
        return _capped_growth(self.base, 2.0, k, self.cap)

    def total_wait_bound(self, max_attempts: int, *, max_rto: float | None = None) -> float:
        """Worst-case duration of one call: every attempt times out.

        That is ``max_attempts`` attempt timeouts plus the largest possible
        backoff before attempts 2..max_attempts (connection errors only end
        attempts sooner). Service time and scheduling latency are not included.
        ``adaptive`` needs the estimator's ``max_rto``: each attempt waits at
        most that long, whatever other calls sharing the estimator do to it.
        """
        _check_attempt(max_attempts)
        if self.adaptive:
            if max_rto is None:
                raise ValueError("adaptive: total_wait_bound needs max_rto (the estimator's cap)")
            return max_attempts * _check_positive("max_rto", max_rto)
        delays = sum(self.max_delay_before(n) for n in range(2, max_attempts + 1))
        return max_attempts * self.timeout + delays

    def schedule(
        self,
        rng: random.Random | None = None,
        rto: RtoEstimator | None = None,
    ) -> RetrySchedule:
        """Fresh per-call schedule.

        ``rng`` is required by the jittered policies (seed it for reproducible
        runs; do not share one fixed seed across calls, or every client backs
        off in lockstep, which is what jitter exists to prevent). ``rto`` is
        required by ``adaptive`` and ignored by the others.
        """
        return RetrySchedule(self, rng=rng, rto=rto)


def _check_attempt(attempt: int) -> None:
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt!r}")


class RetrySchedule:
    """Per-call retry state: the rng, the decorrelated ``prev`` and the estimator.

    Attempts are numbered from 1. Delays are drawn lazily in attempt order and
    remembered, so ``delay_before(n)`` returns the same value however often it
    is asked, and a given seed always yields the same sequence.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        rng: random.Random | None = None,
        rto: RtoEstimator | None = None,
    ) -> None:
        if policy.jittered and rng is None:
            raise ValueError(f"{policy.name} draws random delays: pass rng=random.Random(seed)")
        if policy.adaptive and rto is None:
            raise ValueError("adaptive takes its timeouts from an RtoEstimator: pass rto=...")
        self.policy: Final = policy
        self.rng: Final = rng
        self.rto: Final = rto
        # Brooker's decorrelated jitter starts from sleep = base.
        self._prev = policy.base
        # _delays[i] is the delay before attempt i + 2.
        self._delays: list[float] = []

    def attempt_timeout(self, attempt: int) -> float:
        """How long to wait for attempt ``attempt``'s reply.

        For ``adaptive`` this is the estimator's RTO *now*, so ask when the
        attempt is sent, and call ``rto.on_timeout()`` when it expires: that is
        what makes the next attempt wait twice as long (RFC 6298 5.5).
        """
        _check_attempt(attempt)
        if self.rto is not None and self.policy.adaptive:
            return self.rto.rto
        return self.policy.timeout

    def delay_before(self, attempt: int) -> float:
        """Backoff to sleep before sending ``attempt`` (0.0 for attempt 1).

        Used after a timeout and after a connection error alike.
        """
        _check_attempt(attempt)
        if attempt == 1 or self.policy.name not in _BACKOFF_POLICIES:
            return 0.0
        while len(self._delays) < attempt - 1:
            self._delays.append(self._draw(len(self._delays)))
        return self._delays[attempt - 2]

    def total_wait_bound(self, max_attempts: int) -> float:
        """Worst-case call duration; see :meth:`RetryPolicy.total_wait_bound`."""
        max_rto = None if self.rto is None else self.rto.max_rto
        return self.policy.total_wait_bound(max_attempts, max_rto=max_rto)

    def _draw(self, k: int) -> float:
        """The delay before attempt ``k + 2``; draws must happen in order."""
        p = self.policy
        if p.name == DECORRELATED:
            assert self.rng is not None  # checked in __init__
            hi = self._prev * 3.0
            # Clamp guards against uniform() rounding a hair past its ends.
            drawn = min(hi, max(p.base, self.rng.uniform(p.base, hi)))
            self._prev = min(p.cap, drawn)
            return self._prev
        v = _capped_growth(p.base, 2.0, k, p.cap)
        if p.name == EXPO:
            return v
        assert self.rng is not None  # checked in __init__
        if p.name == EXPO_FULL:
            return min(v, max(0.0, self.rng.uniform(0.0, v)))
        # EXPO_EQUAL: keep half the backoff, jitter the other half.
        half = v / 2.0
        return min(v, half + max(0.0, self.rng.uniform(0.0, half)))


class RtoEstimator:
    """RFC 6298 retransmission timeout; one per client, shared by its calls.

    * Before the first sample, ``rto == initial`` (RFC 6298 2.1).
    * First sample R: SRTT = R, RTTVAR = R/2 (2.2).
    * Later samples R': RTTVAR = (1-beta)*RTTVAR + beta*|SRTT-R'| using the old
      SRTT, then SRTT = (1-alpha)*SRTT + alpha*R' (2.3).
    * RTO = SRTT + max(G, K*RTTVAR), clamped to [min_rto, max_rto] (2.2-2.5).
    * :meth:`on_timeout` doubles RTO up to ``max_rto`` (5.5); the next sample
      recomputes RTO from SRTT/RTTVAR, collapsing the back-off (note in 5.7).

    Karn's rule (RFC 6298 section 3): feed :meth:`on_sample` only RTTs of calls
    answered on their *first* attempt. After a retransmission a reply cannot be
    matched to the attempt that caused it (all carry the same request id), so
    its RTT would be ambiguous.

    Deviation from RFC 6298: 2.4 says RTO SHOULD be at least 1 s. The testbed
    runs on loopback where RTTs are ~100 us, so ``min_rto`` (and ``initial``)
    are parameters; :meth:`rfc6298` builds an estimator with the RFC's values.
    Concurrent calls sharing one estimator may each call :meth:`on_timeout`, so
    a burst of losses backs the RTO off faster than TCP's single timer would.
    """

    ALPHA: Final = 1.0 / 8.0
    BETA: Final = 1.0 / 4.0
    K: Final = 4.0

    def __init__(
        self,
        initial: float = DEFAULT_TIMEOUT,
        min_rto: float = 0.002,
        max_rto: float = 2.0,
        granularity: float = 0.001,
    ) -> None:
        self.initial: Final = _check_positive("initial", initial)
        self.min_rto: Final = _check_positive("min_rto", min_rto)
        self.max_rto: Final = _check_positive("max_rto", max_rto)
        if isinstance(granularity, bool) or not isinstance(granularity, int | float):
            raise TypeError(f"granularity must be a number of seconds, got {granularity!r}")
        if not math.isfinite(granularity) or granularity < 0.0:
            raise ValueError(f"granularity must be a finite number >= 0, got {granularity!r}")
        self.granularity: Final = float(granularity)
        if self.min_rto > self.max_rto:
            raise ValueError(f"min_rto ({min_rto!r}) must not exceed max_rto ({max_rto!r})")
        if not self.min_rto <= self.initial <= self.max_rto:
            raise ValueError(
                f"initial ({initial!r}) must lie in [min_rto, max_rto] = [{min_rto!r}, {max_rto!r}]"
            )
        self._srtt: float | None = None
        self._rttvar: float | None = None
        self._rto = self.initial
        self._samples = 0
        self._backoffs = 0

    @classmethod
    def rfc6298(cls) -> RtoEstimator:
        """RFC 6298's own parameters: initial 1 s, minimum 1 s, maximum 60 s."""
        return cls(initial=1.0, min_rto=1.0, max_rto=60.0)

    @property
    def rto(self) -> float:
        """Current retransmission timeout, seconds."""
        return self._rto

    @property
    def srtt(self) -> float | None:
        """Smoothed RTT, or None before the first sample."""
        return self._srtt

    @property
    def rttvar(self) -> float | None:
        """RTT variation, or None before the first sample."""
        return self._rttvar

    @property
    def samples(self) -> int:
        """Number of RTT samples taken."""
        return self._samples

    @property
    def backoffs(self) -> int:
        """Timeouts since the last sample (RTO has been doubled this many times)."""
        return self._backoffs

    def on_sample(self, rtt: float) -> None:
        """Take an RTT measurement (seconds) and recompute RTO.

        Karn's rule: only for calls answered on their first attempt.
        """
        if isinstance(rtt, bool) or not isinstance(rtt, int | float):
            raise TypeError(f"rtt must be a number of seconds, got {rtt!r}")
        if not math.isfinite(rtt) or rtt < 0.0:
            raise ValueError(f"rtt must be a finite number >= 0, got {rtt!r}")
        r = float(rtt)
        if self._srtt is None or self._rttvar is None:
            self._srtt = r
            self._rttvar = r / 2.0
        else:
            # Order matters: RTTVAR is updated with the *old* SRTT (2.3).
            self._rttvar = (1.0 - self.BETA) * self._rttvar + self.BETA * abs(self._srtt - r)
            self._srtt = (1.0 - self.ALPHA) * self._srtt + self.ALPHA * r
        self._samples += 1
        self._backoffs = 0
        self._rto = self._clamp(self._srtt + max(self.granularity, self.K * self._rttvar))

    def on_timeout(self) -> None:
        """An attempt timed out: back off the timer, RTO = min(2*RTO, max_rto) (5.5).

        Call it for timeouts only; a connection error says nothing about RTT.
        """
        self._backoffs += 1
        self._rto = self._clamp(self._rto * 2.0)

    def _clamp(self, value: float) -> float:
        return min(self.max_rto, max(self.min_rto, value))

    def __repr__(self) -> str:
        return (
            f"RtoEstimator(rto={self._rto!r}, srtt={self._srtt!r}, rttvar={self._rttvar!r}, "
            f"samples={self._samples}, backoffs={self._backoffs})"
        )


class RetryBudget:
    """Client-wide retry throttling, as in gRFC A6 (gRPC retry design).

    ``tokens`` starts at ``max_tokens``. Every failed attempt (timeout or
    connection error) takes 1 token (floor 0); every success gives back
    ``token_ratio`` (ceiling ``max_tokens``). Retries are allowed only while
    ``tokens > max_tokens / 2``. First attempts are never throttled: the budget
    only decides whether a *failed* call may try again, so a client facing a
    mostly-failing server degrades to one attempt per call instead of
    multiplying its load by ``max_attempts``.

    Like gRPC, tokens are kept in integer thousandths so that ten successes of
    0.1 add exactly one token; ``token_ratio`` is rounded to 3 decimals.
    """

    _SCALE: Final = 1000

    def __init__(self, max_tokens: float = 10, token_ratio: float = 0.1) -> None:
        self.max_tokens: Final = _check_positive("max_tokens", max_tokens)
        ratio = _check_positive("token_ratio", token_ratio)
        self._max_milli: Final = round(self.max_tokens * self._SCALE)
        self._ratio_milli: Final = round(ratio * self._SCALE)
        if self._max_milli < 1:
            raise ValueError(f"max_tokens must be at least 0.001, got {max_tokens!r}")
        if self._ratio_milli < 1:
            raise ValueError(f"token_ratio must be at least 0.001, got {token_ratio!r}")
        self.token_ratio: Final = self._ratio_milli / self._SCALE
        self._milli = self._max_milli

    @property
    def tokens(self) -> float:
        """Current token count."""
        return self._milli / self._SCALE

    def allow_retry(self) -> bool:
        """May a failed call send another attempt? (tokens > max_tokens / 2)."""
        # 2*tokens > max keeps the comparison in exact integer arithmetic.
        return 2 * self._milli > self._max_milli

    def on_failure(self) -> None:
        """An attempt failed (timeout or connection error): one token less."""
        self._milli = max(0, self._milli - self._SCALE)

    def on_success(self) -> None:
        """An attempt got its reply: ``token_ratio`` tokens more."""
        self._milli = min(self._max_milli, self._milli + self._ratio_milli)

    def __repr__(self) -> str:
        return (
            f"RetryBudget(tokens={self.tokens:g}, max_tokens={self.max_tokens:g}, "
            f"token_ratio={self.token_ratio:g})"
        )


_DURATION_RE: Final = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|us)?\s*$")
_UNIT_SECONDS: Final = {"s": 1.0, "ms": 1e-3, "us": 1e-6, None: 1.0}


def _parse_duration(key: str, text: str) -> float:
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"{key}={text!r}: expected a duration such as 0.02, 20ms, 1s or 500us")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_policy(spec: str) -> RetryPolicy:
    """Parse a ``--policy`` value: ``NAME`` or ``NAME:key=value,...``.

    Keys are ``timeout``, ``base`` and ``cap``, in seconds, optionally with a
    unit (``expo-full:timeout=20ms,cap=1s``), and ``on-timeout`` (``same`` or
    ``reconnect``, see ``OnTimeout``). Raises ValueError listing the valid
    names for an unknown policy.
    """
    name, _, params = spec.partition(":")
    overrides: dict[str, float] = {}
    on_timeout: OnTimeout | None = None
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if sep and key == "on-timeout":
            if on_timeout is not None:
                raise ValueError(f"policy parameter {key!r} given twice in {spec!r}")
            on_timeout = _parse_on_timeout(value.strip())
            continue
        if not sep or key not in ("timeout", "base", "cap"):
            raise ValueError(
                f"bad policy parameter {item!r} in {spec!r}: "
                "expected timeout=, base=, cap= or on-timeout="
            )
        if key in overrides:
            raise ValueError(f"policy parameter {key!r} given twice in {spec!r}")
        overrides[key] = _parse_duration(key, value)
    return RetryPolicy.from_name(
        name,
        timeout=overrides.get("timeout"),
        base=overrides.get("base"),
        cap=overrides.get("cap"),
        on_timeout=on_timeout or OnTimeout.SAME,
    )


def _parse_on_timeout(text: str) -> OnTimeout:
    try:
        return OnTimeout(text)
    except ValueError:
        choices = ", ".join(choice.value for choice in OnTimeout)
        raise ValueError(f"on-timeout={text!r}: expected one of {choices}") from None
