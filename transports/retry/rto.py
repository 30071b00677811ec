"""The retransmission timeout of RFC 6298, behind the ``adaptive`` policy."""

from __future__ import annotations

import math
from typing import Final

from transports.retry.durations import _check_positive
from transports.retry.policy import DEFAULT_TIMEOUT


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
