"""Linux's RTT estimator and retransmission timeout (RTO), in integer microseconds.

Role: ``RttEstimator`` turns RTT samples into ``icsk_rto`` exactly as
``tcp_rtt_estimator()`` and ``tcp_set_rto()`` in net/ipv4/tcp_input.c do, and
backs it off on each expiry as ``tcp_retransmit_timer()`` does. Pure arithmetic:
no clock, no I/O.
"""

from __future__ import annotations

from transports.tcp_model.config import DEFAULT_CONFIG, TcpConfig, _duration, _us


class RttEstimator:
    """Linux's ``tcp_rtt_estimator()`` and ``tcp_set_rto()``, in integer microseconds.

    ``rto`` is ``icsk_rto``: ``srtt + rttvar`` after each valid sample, doubled
    (up to ``rto_max``) by each expiry. ``rttvar`` never drops below
    ``rto_min`` (it restarts from ``mdev_max = rto_min`` each round trip), which
    is how Linux floors the RTO at ``srtt + 200 ms``. Karn's rule is applied by
    the caller: it passes no sample for a retransmitted segment.
    """

    def __init__(self, config: TcpConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self._rto_min_us = _us(config.rto_min)
        self._srtt8 = 0  # srtt_us: smoothed RTT << 3; 0 until the first sample
        self._mdev = 0  # mdev_us: 4 * the mean deviation
        self._mdev_max = 0  # mdev_max_us: the largest mdev this round, at least rto_min
        self._rttvar = 0  # rttvar_us: mdev_max smoothed; RTO = srtt + rttvar
        self._rtt_seq = 0  # snd_nxt when this round began
        self.rto = config.timeout_init  # icsk_rto, back-off included
        self.backoff = 0  # icsk_backoff: expiries since the last valid sample

    @classmethod
    def after_handshake(cls, rtt: float | None, config: TcpConfig = DEFAULT_CONFIG) -> RttEstimator:
        """The estimator once a connection is up: seeded with the handshake's sample, if any."""
        estimator = cls(config)
        if rtt is None:
            estimator.fallback()
        else:
            estimator.sample(rtt)
        return estimator

    @property
    def srtt(self) -> float | None:
        return self._srtt8 / 8e6 if self._srtt8 else None

    @property
    def rttvar(self) -> float:
        return self._rttvar / 1e6

    def sample(self, rtt: float, *, snd_una: int | None = None, snd_nxt: int = 0) -> None:
        """Feed one valid RTT sample, then recompute the RTO and clear the back-off.

        ``snd_una``/``snd_nxt`` (message counts) delimit Linux's rounds: the
        sample ends a round when ``snd_una`` passes ``snd_nxt`` of the round's
        start. Without them every sample ends a round.
        """
        m = _us(_duration("rtt", rtt))
        srtt = self._srtt8
        if srtt:
            m -= srtt >> 3  # m is now the error in the estimate
            srtt += m  # srtt = 7/8 srtt + 1/8 new
            if m < 0:
                m = -m - (self._mdev >> 2)
                if m > 0:
                    m >>= 3  # RTT falling: a finer gain, so the RTO does not grow
            else:
                m -= self._mdev >> 2
            self._mdev += m  # mdev = 3/4 mdev + 1/4 new
            if self._mdev > self._mdev_max:
                self._mdev_max = self._mdev
                self._rttvar = max(self._rttvar, self._mdev_max)
            if snd_una is None or snd_una > self._rtt_seq:  # after(snd_una, rtt_seq)
                if self._mdev_max < self._rttvar:
                    self._rttvar -= (self._rttvar - self._mdev_max) >> 2
                self._rtt_seq = snd_nxt
                self._mdev_max = self._rto_min_us
        else:
            srtt = m << 3
            self._mdev = m << 1  # so that rto = 3 * rtt
            self._rttvar = max(self._mdev, self._rto_min_us)
            self._mdev_max = self._rttvar
            self._rtt_seq = snd_nxt
        self._srtt8 = max(1, srtt)
        rto = ((self._srtt8 >> 3) + self._rttvar) / 1e6  # __tcp_set_rto()
        self.rto = min(self.config.jiffies(rto), self.config.rto_max)  # tcp_bound_rto()
        self.backoff = 0  # RFC 6298: only reset the back-off on a valid sample

    def on_timeout(self) -> None:
        """One retransmission timer expiry: ``icsk_rto = min(icsk_rto << 1, TCP_RTO_MAX)``."""
        self.backoff += 1
        self.rto = min(2.0 * self.rto, self.config.rto_max)

    def fallback(self) -> None:
        """``tcp_init_metrics()``: no valid sample from the handshake: RTO = 3 s (RFC 6298 5.7)."""
        if not self._srtt8:
            self._rttvar = self._mdev = self._mdev_max = _us(self.config.timeout_fallback)
            self.rto = self.config.timeout_fallback
