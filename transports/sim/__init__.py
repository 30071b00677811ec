"""Virtual-time simulator: the real ``Call`` and ``ServerEndpoint`` over a simulated network.

Role: the third driver next to ``tcp`` and ``udp``. It moves bytes between the
very same sans-I/O objects (``Call`` on the client side, ``ServerEndpoint`` on
the server side, the ``FaultLink`` verdicts in between) but in virtual time, on
one thread, with no sockets and no wall clock (like aioquic's tests: drop a
datagram by not delivering it, step the clock). Same inputs, same result.

Timing model (all times in virtual seconds):

* A client's request goes through its REQUEST link at the send instant (as
  ``TcpChannel``/``UdpChannel.send`` do); each delivery reaches the server at
  ``delivery.at + latency``. The endpoint handles it on arrival.
* The server is infinitely parallel (no queueing): a reply leaves
  ``service_time`` after its request arrived and reaches the client
  ``latency`` later, where the client's REPLY link is applied (as the real
  drivers apply it on receipt); its deliveries go to ``Call.on_reply``.
* The endpoint admits a request on arrival (``ServerEndpoint.admit``) and
  executes it ``service_time`` later (``finish``), when its reply leaves; in
  between an at-most-once request is "in progress", so a retry arriving
  meanwhile is dropped, as on a real server.
* Each client runs its plan sequentially: the next call starts the instant the
  previous one is done, or at its ``SimRequest.not_before`` if that is later
  (an open-loop schedule: a client behind schedule catches up back to back).
  Clients run concurrently; heap ties break by sequence number, so the
  interleaving is deterministic.

Stream (TCP-like) model: each client has a connection epoch. The first send
after a break opens a connection (counted): the request link's ``connect``
says when the three-way handshake completes (SYN and SYN-ACK losses under
``tcp=retransmit``), and messages wait one handshake RTT (``2 * latency``)
more before they leave. The links' verdicts carry TCP's own recovery: a lost
message arrives after TCP retransmits it, and later ones wait behind it. A
REQUEST verdict with ``reset`` breaks the connection before the request is
sent: the Call learns of it at the same instant (``TcpChannel.send`` raises at
once). A REPLY verdict with ``reset`` means the server applied the request but
the connection broke; the Call learns of it when the reset reaches it (the
reply's arrival time). When an attempt times out, the client keeps its
connection or aborts it (``RetryPolicy.on_timeout``). Anything still in
flight on an old epoch is discarded on arrival: an aborted connection
delivers nothing more.

Links: by default each client gets ``Links.build(faults.link, seed, f"client{i}")``;
``links=`` overrides them (e.g. ``transports.schedule.ScheduledLink``s, whose
decisions come from an explicit list instead of an RNG).

Server crashes: the server numbers request arrivals 0, 1, 2, ... over all
clients (messages discarded with a reset connection are not arrivals). A
crash policy maps an arrival number to a ``CrashPoint`` or None. A crash
loses the server's volatile state: the reply cache is cleared and every
request admitted but not yet finished is dropped (its reply never leaves);
the SQLite ledger is durable and survives. Restart is instantaneous.
``BEFORE_APPLY``: the server crashes as the request arrives, and the
restarted server handles it. ``AFTER_APPLY``: the server handles the
request (the ledger change commits) and crashes before the reply leaves.
Without an explicit policy, ``FaultSpec.crash`` is a per-arrival crash
probability, the point drawn 50/50, from ``random.Random(f"{seed}/server/crash")``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from transports.call import RetrySettings
from transports.endpoint import ServerEndpoint
from transports.faults import FaultSpec
from transports.links import Links
from transports.sim.crashes import CrashPoint, CrashPolicy, random_crashes
from transports.sim.engine import _Client, _Sim
from transports.sim.types import SimRequest, SimResult

__all__ = ["CrashPoint", "CrashPolicy", "SimRequest", "SimResult", "random_crashes", "simulate"]


def simulate(
    endpoint: ServerEndpoint,
    plans: Sequence[Sequence[SimRequest]],
    settings: Callable[[int], RetrySettings],
    *,
    faults: FaultSpec | None = None,
    seed: int = 0,
    stream: bool = False,
    latency: float = 100e-6,
    service_time: float = 0.0,
    max_events: int = 10_000_000,
    on_server_receive: Callable[[float, bytes], None] | None = None,
    links: Sequence[Links] | None = None,
    crashes: CrashPolicy | None = None,
) -> SimResult:
    """Run every client's plan to completion in virtual time (see the module doc).

    The network drains before returning: a late duplicate still reaches the
    server after its client has finished, as it would on a real network.
    Raises ``RuntimeError`` after ``max_events`` events.

    ``links`` replaces the per-client fault links built from ``faults`` (one
    ``Links`` per plan, used once: a link keeps state). ``crashes`` is the
    crash policy; by default ``faults.crash`` drives ``random_crashes``.
    """
    if latency < 0 or service_time < 0:
        raise ValueError("latency and service_time must be >= 0")
    if crashes is None and faults is not None and faults.crash > 0.0:
        crashes = random_crashes(faults.crash, seed)
    n = len(plans)
    if links is None:
        link_faults = None if faults is None else faults.link
        links = [
            Links.build(link_faults, seed, f"client{i}", stream=stream, origin=0.0)
            for i in range(n)
        ]
    elif len(links) != n:
        raise ValueError(f"links: expected one Links per client ({n}), got {len(links)}")
    clients = [
        _Client(plans[i], settings(i), random.Random(f"{seed}/client{i}"), links[i])
        for i in range(n)
    ]
    sim = _Sim(endpoint, clients, stream, latency, service_time, on_server_receive, crashes)
    events = sim.run(max_events)
    return SimResult(
        calls=[client.results for client in clients],
        virtual_time=sim.clock,
        messages=sim.messages,
        events=events,
        connections=[client.connections for client in clients],
        arrivals=sim.arrivals,
        crashes=sim.crashes,
    )
