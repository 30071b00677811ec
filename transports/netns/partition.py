"""The kernel backend's partition: an nftables drop rule added and removed at the right times.

Role: carry out the spec's ``Partition`` between the two namespaces. When
each window opens, a table of our own (``rtpartition``) with a rule that
drops every packet arriving over the veth is added in the receiving
namespace (``b`` for requests, ``a`` for replies, both for both); when the
window closes the table is deleted. Kernel TCP then does what it does in a
real partition: it retransmits on its own RTO back-off until a copy gets
through after the heal. ``partition_events`` (pure, time as an argument)
says when; ``PartitionTimer`` (a thread, bounded by ``until``) does it.
The veth pair carries every client at once, so a partition for chosen
clients is refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from transports.faults import Cut, Partition
from transports.netns.commands import Runner, UnsupportedFault, check

if TYPE_CHECKING:
    from transports.netns.pair import Side

PARTITION_TABLE = "rtpartition"
#: The timer stops here at the latest (seconds after its origin): a periodic
#: partition is bounded like every other loop of the testbed.
DEFAULT_HORIZON = 3600.0


def partition_events(partition: Partition, until: float) -> Iterator[tuple[float, bool]]:
    """``(t, cut)`` in time order: the partition starts (True) or heals (False) at ``t``."""
    begin = partition.start
    while not partition.is_zero and begin < until:
        yield begin, True
        yield begin + partition.duration, False
        if not partition.every:
            return
        begin += partition.every


def cut_sides(cut: Cut, a: Side, b: Side) -> tuple[Side, ...]:
    """Where the drop rule goes: at the receiver (``a`` is the client side)."""
    return {Cut.REQUESTS: (b,), Cut.REPLIES: (a,), Cut.BOTH: (a, b)}[cut]


def check_partition(partition: Partition) -> None:
    """``UnsupportedFault`` for what one veth pair cannot cut: chosen clients only."""
    if partition.clients is not None:
        raise UnsupportedFault(
            "the kernel backend cuts the whole link: partition_clients needs the in-process "
            "fault layer or the fault proxy"
        )


def set_cut(runner: Runner, sides: tuple[Side, ...], on: bool) -> None:
    """Add (``on``) or delete the drop-everything table where packets arrive on ``sides``."""
    for side in sides:
        exec_argv = ["ip", "netns", "exec", side.netns, "nft"]
        if not on:
            runner([*exec_argv, "delete", "table", "inet", PARTITION_TABLE], None)
            continue
        script = "\n".join(
            [
                f"add table inet {PARTITION_TABLE}",
                # Before the loss rules (priority 0): a cut packet is not counted as a loss.
                f"add chain inet {PARTITION_TABLE} ingress "
                "{ type filter hook input priority -10; }",
                f"add rule inet {PARTITION_TABLE} ingress iifname {side.device} counter drop",
            ]
        )
        check(runner([*exec_argv, "-f", "-"], script + "\n"))


class PartitionTimer:
    """Cuts and heals the link on the partition's schedule, from ``origin`` (monotonic time)."""

    def __init__(
        self,
        partition: Partition,
        apply: Callable[[bool], None],
        *,
        origin: float | None = None,
        until: float = DEFAULT_HORIZON,
    ) -> None:
        self.partition = partition
        self.origin = time.monotonic() if origin is None else origin
        self.until = until
        self.applied: list[tuple[float, bool]] = []  # (scheduled time, cut) as carried out
        self.error: BaseException | None = None
        self._apply = apply
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="partition-timer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for at, cut in partition_events(self.partition, self.until):
                if self._stop.wait(max(0.0, self.origin + at - time.monotonic())):
                    return
                self._apply(cut)
                self.applied.append((at, cut))
        except BaseException as err:  # reported by stop(): a thread cannot raise to its owner
            self.error = err

    def done(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` for the last event; True when every event was carried out."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Stop the timer (events not yet due are skipped); re-raise an error it met."""
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise self.error
