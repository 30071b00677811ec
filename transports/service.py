"""The interface a service implements for the transports, and the error it raises.

``transports`` owns this contract; ``services`` implements it. The server
endpoint maps a ``ServiceError`` to a wire error reply in exactly one place
(``transports.endpoint``), so services never build replies themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

JsonObject = dict[str, Any]


class ServiceError(Exception):
    """Base of all service errors; ``code`` is what goes on the wire."""

    code: ClassVar[str] = "SERVICE_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, init=False)
class CallContext:
    """What a service may know about the request it is executing.

    ``request_id`` identifies the logical operation (every retry of it carries
    the same id); the bank records it with each ledger change so an audit can
    count applications. ``idempotent`` asks the service to store the id
    durably with the change and answer a repeat from that record
    (exactly-once semantics). ``now`` is the caller's clock, in seconds;
    ``wall`` the wall clock, for times a service persists.
    """

    request_id: str
    now: float
    idempotent: bool = False
    #: A wall clock (Unix time) for times the service stores (session expiry,
    #: lockouts): ``now`` is monotonic and restarts at boot. Defaults to ``now``
    #: (a simulation's virtual time is both).
    wall: float = 0.0

    def __init__(
        self, request_id: str, now: float, idempotent: bool = False, wall: float | None = None
    ) -> None:
        # Built once per request: writing __dict__ skips the frozen dataclass's
        # one-call-per-field __init__ (assignment afterwards still raises).
        fields = self.__dict__
        fields["request_id"], fields["now"], fields["idempotent"] = request_id, now, idempotent
        fields["wall"] = now if wall is None else wall


class Service(Protocol):
    """A named set of operations, e.g. ``text.convert``.

    A service may also declare ``expensive_ops`` (a frozenset of operation
    names) and ``expensive(op, args) -> bool``: calls far costlier than their
    message (the bank's scrypt login), which a server's admission screens
    before running them (``transports.admission``). Both are optional.
    """

    name: str
    #: Operations whose ``handle`` may block (CPU-heavy hashing, waiting for
    #: another process's lock or computation): drivers run the calls that
    #: ``blocks`` in a worker thread; every other call runs on the event loop,
    #: which is far cheaper than a thread hand-off for work of a few tens of
    #: microseconds.
    blocking_ops: frozenset[str]

    def blocks(self, op: str, args: Mapping[str, Any]) -> bool:
        """Whether this call may block; only an operation in ``blocking_ops`` may."""
        ...

    def handle(self, op: str, args: Mapping[str, Any], ctx: CallContext) -> JsonObject:
        """Execute ``op`` with ``args``; raise ``ServiceError`` on bad input."""
        ...
