"""TCP's own loss recovery, as Linux does it: a pure, seeded, sans-I/O model.

Role: in stream mode the fault layer today turns a lost message into a broken
connection. Kernel TCP instead hides the loss: it sends the segment again (a
tail loss probe first, then on each retransmission timeout, backing off
exponentially), and every later byte on the connection waits behind it
(head-of-line blocking). This package computes *when* each message reaches the
receiving application under that recovery, from the uniform draws that decide
which copies the network loses. It never reads a clock or touches a socket:
time is an argument, as in aioquic's ``quic/recovery.py``, so the simulator and
the real-socket drivers can make the same decisions and the kernel backend can
check them. It is meant to be plugged into ``transports/faults.py`` as
``tcp=retransmit``.

Modules, each following the Linux source named in its docstrings:

* ``config``: the kernel's constants and sysctl defaults, ``model_timeout``.
* ``rtt``: ``RttEstimator`` (``tcp_rtt_estimator()``, ``tcp_set_rto()``, back-off).
* ``recovery``: ``recovery_schedule`` (tail loss probe, RTO back-off, giving up)
  and ``RetransmittingStream`` (one direction of one connection, FIFO delivery).
* ``handshake``: ``connect``, the three-way handshake with SYN/SYN-ACK retries.
* ``analytic``: delay distributions and the probability of outlasting a timeout.

FAULTS.md ("TCP loss recovery model") documents the model, its sources and
what it leaves out.
"""

from transports.tcp_model.analytic import delay_distribution, p_delay_exceeds, p_sum_exceeds
from transports.tcp_model.config import (
    DEFAULT_CONFIG,
    HZ,
    TCP_INVALID_RATELIMIT,
    TCP_RETRIES2,
    TCP_RTO_MAX,
    TCP_RTO_MIN,
    TCP_SYN_LINEAR_TIMEOUTS,
    TCP_SYN_RETRIES,
    TCP_SYNACK_RETRIES,
    TCP_TIMEOUT_FALLBACK,
    TCP_TIMEOUT_INIT,
    TCP_TIMEOUT_MIN,
    Draw,
    TcpConfig,
    model_timeout,
)
from transports.tcp_model.handshake import Handshake, connect, syn_schedule
from transports.tcp_model.recovery import (
    RecoverySchedule,
    RetransmittingStream,
    SegmentFate,
    established_schedule,
    recovery_schedule,
    retransmit_draws,
)
from transports.tcp_model.rtt import RttEstimator

__all__ = [
    "DEFAULT_CONFIG",
    "HZ",
    "TCP_INVALID_RATELIMIT",
    "TCP_RETRIES2",
    "TCP_RTO_MAX",
    "TCP_RTO_MIN",
    "TCP_SYNACK_RETRIES",
    "TCP_SYN_LINEAR_TIMEOUTS",
    "TCP_SYN_RETRIES",
    "TCP_TIMEOUT_FALLBACK",
    "TCP_TIMEOUT_INIT",
    "TCP_TIMEOUT_MIN",
    "Draw",
    "Handshake",
    "RecoverySchedule",
    "RetransmittingStream",
    "RttEstimator",
    "SegmentFate",
    "TcpConfig",
    "connect",
    "delay_distribution",
    "established_schedule",
    "model_timeout",
    "p_delay_exceeds",
    "p_sum_exceeds",
    "recovery_schedule",
    "retransmit_draws",
    "syn_schedule",
]
