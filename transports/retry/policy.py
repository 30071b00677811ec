"""Retry policies by name (Brooker's backoffs, adaptive RTO) and each call's schedule of waits."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from transports.retry.durations import _check_positive, _format_duration

if TYPE_CHECKING:
    from transports.retry.rto import RtoEstimator

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
