"""Seeded, sans-I/O fault layer: what the network does to each message.

Role: decide, for one direction of one link, whether a message is lost,
duplicated, held back (reordered), delayed, corrupted, or (stream/TCP mode)
retransmitted or breaks the connection. The decisions are pure and
synchronous: ``FaultLink`` never reads a clock or touches a socket; it takes
``now`` and returns a ``Verdict`` that a driver (asyncio TCP/UDP, or the
virtual-time simulator) carries out. One spec string (``FaultSpec``)
configures every fault, and one seed reproduces every decision. The model is
documented in ``transports/FAULTS.md``.

* ``spec``: ``FaultSpec``, ``LinkFaults``, ``ServerFaults`` and parsing.
* ``link``: ``FaultLink`` and its ``Verdict``.
* ``partition``: timed faults: ``Partition`` (a window, optionally periodic,
  one direction or both, chosen clients or all), time as an argument.
* ``analytic``: closed forms (stationary loss, delivery probabilities).
"""

from transports.faults.analytic import (
    expected_delivery,
    expected_intact,
    mean_burst_length,
    stationary_loss_rate,
)
from transports.faults.link import (
    Delivery,
    Direction,
    Fate,
    FaultLink,
    Verdict,
    corrupt_bits,
    label_for,
    link_pair,
)
from transports.faults.partition import Cut, Partition, PartitionError
from transports.faults.spec import (
    MAX_DURATION,
    FaultSpec,
    FaultSpecError,
    LinkFaults,
    ServerFaults,
    TcpRecovery,
)

__all__ = [
    "MAX_DURATION",
    "Cut",
    "Delivery",
    "Direction",
    "Fate",
    "FaultLink",
    "FaultSpec",
    "FaultSpecError",
    "LinkFaults",
    "Partition",
    "PartitionError",
    "ServerFaults",
    "TcpRecovery",
    "Verdict",
    "corrupt_bits",
    "expected_delivery",
    "expected_intact",
    "label_for",
    "link_pair",
    "mean_burst_length",
    "stationary_loss_rate",
]
