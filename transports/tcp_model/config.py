"""Linux's TCP timer constants and sysctl defaults, and the shared validators.

Role: one place for the numbers the loss-recovery model takes from the kernel
(each one's source is in FAULTS.md, "TCP loss recovery model"), plus
``tcp_model_timeout()``, the kernel's way of turning a retry count into a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# Linux defaults, in seconds (sources in FAULTS.md).
TCP_RTO_MIN = 0.2  # HZ/5; net.ipv4.tcp_rto_min_us
TCP_RTO_MAX = 120.0  # 120*HZ; net.ipv4.tcp_rto_max_ms
TCP_TIMEOUT_INIT = 1.0  # RFC 6298 (2.1): RTO before the first RTT sample
TCP_TIMEOUT_FALLBACK = 3.0  # RFC 6298 (5.7): no valid RTT sample from the handshake
TCP_TIMEOUT_MIN = 0.002  # TCP_TIMEOUT_MIN_US: the PTO's extra term with >1 packet out
TCP_RETRIES2 = 15  # net.ipv4.tcp_retries2
TCP_SYN_RETRIES = 6  # net.ipv4.tcp_syn_retries
TCP_SYNACK_RETRIES = 5  # net.ipv4.tcp_synack_retries
TCP_SYN_LINEAR_TIMEOUTS = 4  # net.ipv4.tcp_syn_linear_timeouts (Linux 6.5+)
TCP_INVALID_RATELIMIT = 0.5  # net.ipv4.tcp_invalid_ratelimit: SYN-ACKs for duplicate SYNs
HZ = 250  # CONFIG_HZ: the kernel's Kconfig default, and this testbed's machine

Draw = Callable[[], float]


def _us(seconds: float) -> int:
    return round(seconds * 1e6)


def _probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return value


def _duration(name: str, value: float) -> float:
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a finite duration >= 0, got {value!r}")
    return value


@dataclass(frozen=True)
class TcpConfig:
    """The kernel constants and sysctls the model uses; the defaults are Linux's.

    ``tlp`` stands for ``tcp_early_retrans`` 3 with SACK negotiated (both
    defaults). ``timestamps`` stands for ``tcp_timestamps`` 1 (the default):
    an ACK of a retransmitted segment still gives an RTT sample through the
    echoed timestamp; with ``timestamps=False`` Karn's rule drops those samples.
    ``hz`` is ``CONFIG_HZ``: Linux keeps the RTO in jiffies, rounding up
    (``usecs_to_jiffies()``), so a 200.1 ms RTO is 204 ms at HZ=250 and 201 ms
    at HZ=1000.
    """

    rto_min: float = TCP_RTO_MIN
    rto_max: float = TCP_RTO_MAX
    timeout_init: float = TCP_TIMEOUT_INIT
    timeout_fallback: float = TCP_TIMEOUT_FALLBACK
    retries2: int = TCP_RETRIES2
    syn_retries: int = TCP_SYN_RETRIES
    synack_retries: int = TCP_SYNACK_RETRIES
    syn_linear_timeouts: int = TCP_SYN_LINEAR_TIMEOUTS
    tlp: bool = True
    timestamps: bool = True
    hz: int = HZ

    def __post_init__(self) -> None:
        for name in ("rto_min", "rto_max", "timeout_init", "timeout_fallback"):
            if not _duration(name, getattr(self, name)) > 0.0:
                raise ValueError(f"{name} must be positive")
        if not self.rto_min <= self.rto_max or not self.timeout_init <= self.rto_max:
            raise ValueError("rto_min and timeout_init must not exceed rto_max")
        for name in ("retries2", "syn_retries", "synack_retries", "syn_linear_timeouts"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.hz < 1:
            raise ValueError(f"hz must be >= 1, got {self.hz}")

    def jiffies(self, seconds: float) -> float:
        """``seconds`` rounded up to whole jiffies, as ``usecs_to_jiffies()`` does."""
        return -(-_us(seconds) * self.hz // 1_000_000) / self.hz


DEFAULT_CONFIG = TcpConfig()


def model_timeout(boundary: int, rto_base: float, rto_max: float = TCP_RTO_MAX) -> float:
    """``tcp_model_timeout()``: how long ``boundary`` back-offs from ``rto_base`` take.

    Linux gives up on a connection when this much time has passed since the
    first retransmission, not after a count: ``tcp_retries2`` = 15 with
    ``TCP_RTO_MIN`` gives 1023 * 0.2 + 6 * 120 = 924.6 s.
    """
    thresh = (_us(rto_max) // _us(rto_base)).bit_length() - 1  # ilog2(TCP_RTO_MAX / rto_base)
    if boundary <= thresh:
        return ((2 << boundary) - 1) * rto_base
    return ((2 << thresh) - 1) * rto_base + (boundary - thresh) * rto_max
