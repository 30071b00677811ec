"""The fault proxy's counters: per direction and per proxy, and the summary printed on exit."""

from __future__ import annotations

import collections

from tabulate import tabulate

from transports.faults import Verdict
from transports.proxy.config import REPLY, REQUEST, ProxyConfig, describe

DIRECTION_NAMES = {REQUEST: "client->server", REPLY: "server->client"}
# Summary columns. In stream mode dup and reorder are absorbed (always 0); UDP
# has no connection to reset, stall or slice.
COLUMNS = {
    "tcp": ("messages", "forwarded", "dropped", "partitioned", "delayed", "corrupted", "reset",
            "stalled", "writes", "bytes"),
    "udp": ("messages", "forwarded", "dropped", "partitioned", "duplicated", "reordered",
            "delayed", "corrupted", "bytes"),
}  # fmt: skip
# FaultLink event -> summary column. Stream mode's absorbed_* and fifo_hold are
# not faults the peer sees, so they are not columns.
_EVENT_COLUMN = {
    "drop": "dropped", "dup": "duplicated", "reorder": "reordered", "delay": "delayed",
    "corrupt": "corrupted", "reset": "reset", "partition": "partitioned",
}  # fmt: skip


class ProxyStats:
    """Counters per direction (``COLUMNS``) and per proxy (connections, refused, ...)."""

    def __init__(self) -> None:
        self.directions = {d: collections.Counter[str]() for d in (REQUEST, REPLY)}
        self.totals = collections.Counter[str]()

    def record(self, direction: str, verdict: Verdict, size: int) -> None:
        counter = self.directions[direction]
        counter["messages"] += 1
        counter["bytes"] += size
        counter["forwarded"] += len(verdict.deliveries)  # a duplicate counts twice
        counter.update(_EVENT_COLUMN[e] for e in verdict.events if e in _EVENT_COLUMN)

    def table(self, transport: str) -> str:
        columns = COLUMNS[transport]
        rows = [
            [DIRECTION_NAMES[d], *(self.directions[d][c] for c in columns)]
            for d in (REQUEST, REPLY)
        ]
        return tabulate(rows, ["direction", *columns], disable_numparse=True)

    def summary(self, config: ProxyConfig) -> str:
        unit = "connections" if config.transport == "tcp" else "sessions"
        extra = ", ".join(f"{k} {v}" for k, v in sorted(self.totals.items()) if k != unit)
        return (
            f"[PROXY STOPPED] {describe(config)}: {unit} {self.totals[unit]}"
            + (f", {extra}" if extra else "")
            + "\n"
            + self.table(config.transport)
        )
