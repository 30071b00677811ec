"""Closed forms of the link faults, for the analytic predictions beside each measurement."""

from __future__ import annotations

import math

from transports.faults.spec import LinkFaults


def stationary_loss_rate(faults: LinkFaults) -> float:
    """Long-run fraction of messages the network loses (loss or Gilbert-Elliott)."""
    if not faults.gilbert_elliott:
        return faults.loss
    pi_bad = faults.ge_p / (faults.ge_p + faults.ge_r)
    return (1.0 - pi_bad) * faults.loss + pi_bad * faults.ge_loss


def expected_delivery(faults: LinkFaults, *, stream: bool = False) -> float:
    """Probability one message arrives at all (possibly corrupted).

    In stream mode a ``reset`` draw also prevents delivery; it is independent of
    the loss draw, so the probabilities multiply.
    """
    delivered = 1.0 - stationary_loss_rate(faults)
    return delivered * (1.0 - faults.reset) if stream else delivered


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
