"""The interface every service implements, and the per-call context."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class CallContext:
    """What a service may know about the request it is executing.

    ``request_id`` identifies the logical operation (every retry of it carries
    the same id); the bank records it with each ledger change so an audit can
    count applications. ``idempotent`` asks the service to store the id
    durably with the change and answer a repeat from that record
    (exactly-once semantics). ``now`` is the caller's clock, in seconds.
    """

    request_id: str
    now: float
    idempotent: bool = False


class Service(Protocol):
    """A named set of operations, e.g. ``text.convert``."""

    name: str
    #: True when ``handle`` may block (disk, CPU-heavy hashing): drivers then
    #: run it in a worker thread instead of on the event loop.
    blocking: bool

    def handle(self, op: str, args: Mapping[str, Any], ctx: CallContext) -> JsonObject:
        """Execute ``op`` with ``args``; raise ``ServiceError`` on bad input."""
        ...
