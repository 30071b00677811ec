"""TCP connection slots: the server-wide and per-host counts, and peers that already closed.

A connection holds a slot from ``admit`` until ``release``. asyncio accepts a
burst of connections in one go and reads their end-of-file only on a later
loop iteration, so under connect/close churn most counted connections can be
closed already by their peer (issue 16: 1,024 slots full, 4 connections
established). Before refusing one, ``admit`` asks the caller to ``reap``
those: ``closed_peers`` finds them with one poll(2) for POLLRDHUP.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


class ConnectionSlots:
    """Counts connections in total and per source host, against two limits."""

    def __init__(self, total: int, per_source: int, count: Callable[[str], object]) -> None:
        self.total = total
        self.per_source = per_source
        self._count = count  # the endpoint's counters
        self.connections: set[object] = set()
        self._per_host: dict[str, int] = {}

    def admit(self, connection: object, host: str, reap: Callable[[], int] | None = None) -> bool:
        """Count ``connection`` from ``host``, or refuse it (counted) over a limit.

        ``reap``, called once before a refusal, releases the connections whose
        peer has already closed and says how many.
        """
        refusal = self._over_limit(host)
        if refusal is not None and reap is not None and reap():
            refusal = self._over_limit(host)
        if refusal is not None:
            self._count(refusal)
            return False
        self.connections.add(connection)
        self._per_host[host] = self._per_host.get(host, 0) + 1
        self._count("connections")
        return True

    def release(self, connection: object, host: str) -> None:
        """Free ``connection``'s slot; idempotent (a reaped connection closes later)."""
        if connection in self.connections:
            self.connections.discard(connection)
            left = self._per_host[host] - 1
            if left:
                self._per_host[host] = left
            else:
                del self._per_host[host]

    def _over_limit(self, host: str) -> str | None:
        """The counter of the limit a new connection from ``host`` would exceed, if any."""
        if len(self.connections) >= self.total:
            return "refused_connections"
        if self._per_host.get(host, 0) >= self.per_source:
            return "refused_connections_per_source"
        return None


def closed_peers(candidates: Iterable[tuple[int, T]]) -> list[T]:
    """Of ``(fd, connection)`` pairs, the connections whose peer has closed (or failed)."""
    poller = select.poll()
    by_fd: dict[int, T] = {}
    for fd, connection in candidates:
        if fd >= 0:
            by_fd[fd] = connection
            poller.register(fd, select.POLLRDHUP)
    return [by_fd[fd] for fd, _ in poller.poll(0)]  # RDHUP, HUP or ERR
