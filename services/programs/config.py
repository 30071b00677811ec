"""What ``serve`` and ``client`` run with: the command line as typed, immutable values.

``services.programs.cli`` builds one config from the parsed options, once;
the server and client programs take it, never an ``argparse.Namespace``.
The defaults here are the command line's. A value is as the user gave it:
the command line checks what needs no server, and ``services.programs.options``
the rest, where the programs always checked it (so errors come in the same order).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.programs.crash_hook import RANDOM_POINT
from transports.admission import AdmissionLimits
from transports.aio.driver import ServerLimits
from transports.faults import FaultSpec
from transports.semantics import Semantics

__all__ = ["ClientConfig", "ServerConfig"]


@dataclass(frozen=True)
class ServerConfig:
    """``python -m services serve SERVICE ...``: one server, or ``workers`` of them."""

    service: str  # text, numbers or bank
    transport: str = "tcp"
    host: str = "127.0.0.1"
    port: int = 5050
    # Link faults on the server's side of each peer's link; server faults in the server.
    faults: FaultSpec = field(default_factory=FaultSpec)
    seed: int = 0  # seeds every fault decision
    db: str | None = None  # the bank's ledger file; None: a fresh temporary one
    framing: str = "length"  # TCP: "length" (ours) or "seed" (the lab's)
    semantics: Semantics | None = None  # None: the service's default
    fault_backend: str = "in-process"  # or "kernel"
    fault_layer: bool = False  # fault links even when no link fault is configured
    workers: int = 1
    threads: int = 4
    prime_processes: int = 1
    crash_point: str = RANDOM_POINT
    max_connections: int = ServerLimits.max_connections
    max_connections_per_source: int = ServerLimits.max_connections_per_source
    login_threads: int = 2  # threads for the expensive operations (logins)
    login_queue: int = AdmissionLimits.max_outstanding
    login_queue_per_host: int = AdmissionLimits.max_per_host
    login_rate: float = AdmissionLimits.flow_rate  # per flow (host, port), per second
    frame_timeout: float = ServerLimits.frame_timeout
    idle_timeout: float = ServerLimits.idle_timeout
    max_in_flight: int = ServerLimits.max_in_flight
    loop: str = "asyncio"  # or "uvloop"
    verbose: bool = False  # log rejected input


@dataclass(frozen=True)
class ClientConfig:
    """``python -m services client SERVICE ...``: an interactive client."""

    service: str  # text, numbers or atm
    transport: str = "tcp"
    host: str = "127.0.0.1"
    port: int = 5050
    faults: FaultSpec = field(default_factory=FaultSpec)  # only its link faults act, client side
    seed: int = 0
    timeout: float | None = None  # None: the transport's default retry policy
    attempts: int | None = None  # None: the transport's default
