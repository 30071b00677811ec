"""Closed forms of the link faults, for the analytic predictions beside each measurement."""

from __future__ import annotations

import math

from transports.faults.spec import LinkFaults, TcpRecovery
from transports.tcp_model import RttEstimator, recovery_schedule


def stationary_loss_rate(faults: LinkFaults) -> float:
    """Long-run fraction of messages the network loses (loss or Gilbert-Elliott)."""
    if not faults.gilbert_elliott:
        return faults.loss
    pi_bad = faults.ge_p / (faults.ge_p + faults.ge_r)
    return (1.0 - pi_bad) * faults.loss + pi_bad * faults.ge_loss


def expected_delivery(faults: LinkFaults, *, stream: bool = False) -> float:
    """Probability one message arrives at all, however late (possibly corrupted).

    In stream mode a ``reset`` draw also prevents delivery; it is independent of
    the loss draw, so the probabilities multiply. Under ``tcp=retransmit`` a
    loss only delays the message: it fails to arrive only if every copy TCP
    sends before giving up is lost (``loss ** copies``, copies from the
    recovery schedule of a fresh loopback connection).
    """
    loss = stationary_loss_rate(faults)
    if not stream:
        return 1.0 - loss
    if faults.tcp is TcpRecovery.RETRANSMIT:
        estimator = RttEstimator.after_handshake(0.0)
        copies = len(recovery_schedule(estimator.rto, estimator.srtt).offsets)
        return (1.0 - loss**copies) * (1.0 - faults.reset)
    return (1.0 - loss) * (1.0 - faults.reset)


def expected_intact(faults: LinkFaults, *, stream: bool = False) -> float:
    """Probability one message arrives and passes the receiver's CRC.

    A duplicate carries the same bytes as the original, so it does not help.
    """
    return expected_delivery(faults, stream=stream) * (1.0 - faults.corrupt)


def mean_burst_length(faults: LinkFaults) -> float:
    """Mean number of consecutive messages spent in the bad state: ``1 / ge_r``.

    This is the mean loss-burst length when ``ge_loss = 1`` and ``loss = 0``;
    without Gilbert-Elliott, independent loss gives ``1 / (1 - loss)``.
    """
    if not faults.gilbert_elliott:
        return 1.0 / (1.0 - faults.loss) if faults.loss < 1.0 else math.inf
    return 1.0 / faults.ge_r if faults.ge_r > 0.0 else math.inf
