"""What the simulator takes and returns: planned operations and the run's result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transports.call import CallResult
from transports.sim.crashes import CrashPoint


@dataclass(frozen=True, init=False)
class SimRequest:
    """One logical operation a simulated client performs."""

    request_id: str
    op: str
    args: dict[str, Any]
    #: The client starts it no earlier than this (an open-loop schedule: a steady
    #: offered load); 0: as soon as the previous operation is done.
    not_before: float = 0.0

    # One per planned operation: built by writing __dict__ (as ``wire.Request``)
    # rather than by the generated frozen __init__, which costs a call per field.
    def __init__(
        self, request_id: str, op: str, args: dict[str, Any], not_before: float = 0.0
    ) -> None:
        fields = self.__dict__
        fields["request_id"], fields["op"], fields["args"] = request_id, op, args
        fields["not_before"] = not_before


@dataclass
class SimResult:
    calls: list[list[CallResult]]  # per client, in plan order
    virtual_time: float  # time of the last event processed (stale timers excepted)
    messages: int  # messages handed to the network, both directions, before faults
    events: int  # events popped from the heap, stale ones included
    connections: list[int]  # per client: connections opened (0 in datagram mode)
    arrivals: int = 0  # requests that reached the server (the crash policy's index space)
    crashes: list[tuple[int, CrashPoint]] = field(default_factory=list)  # (arrival, point)
