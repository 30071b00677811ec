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
  previous one is done. Clients run concurrently; heap ties break by sequence
  number, so the interleaving is deterministic.

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

import enum
import heapq
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from transports.call import Call, CallResult, RetrySettings
from transports.endpoint import ServerEndpoint
from transports.faults import FaultLink, FaultSpec
from transports.links import Links
from transports.retry import OnTimeout
from transports.wire import Request

__all__ = ["CrashPoint", "CrashPolicy", "SimRequest", "SimResult", "random_crashes", "simulate"]

# Every event is a plain tuple (time, seq, handler, client, tag, data); ``tag``
# is an epoch (messages) or a generation (timers); ``data`` is bytes, or, for a
# server completing a request, (Request, server life, arrival, crash point).
# Ties in time break by the sequence number, so the order is deterministic.
_Handler = Callable[[float, "_Client", int, Any], None]
_Event = tuple[float, int, _Handler, "_Client", int, Any]


class CrashPoint(enum.Enum):
    """Where in handling a request the server crashes."""

    BEFORE_APPLY = "before"  # on arrival: the restarted server handles the request
    AFTER_APPLY = "after"  # the change is committed, the reply is lost


#: Maps a request arrival number (0, 1, ... over all clients) to a crash, or None.
CrashPolicy = Callable[[int], CrashPoint | None]


def random_crashes(rate: float, seed: int) -> CrashPolicy:
    """Crash on each arrival with probability ``rate``, before or after apply 50/50.

    Two draws per arrival, always (common random numbers, as ``FaultLink``):
    a higher rate crashes at a superset of the arrivals of a lower one.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"crash rate must be in [0, 1], got {rate}")
    rng = random.Random(f"{seed}/server/crash")

    def crash_at(_arrival: int) -> CrashPoint | None:
        u_crash, u_point = rng.random(), rng.random()
        if u_crash >= rate:
            return None
        return CrashPoint.BEFORE_APPLY if u_point < 0.5 else CrashPoint.AFTER_APPLY

    return crash_at


@dataclass(frozen=True, init=False)
class SimRequest:
    """One logical operation a simulated client performs."""

    request_id: str
    op: str
    args: dict[str, Any]

    # One per planned operation: built by writing __dict__ (as ``wire.Request``)
    # rather than by the generated frozen __init__, which costs a call per field.
    def __init__(self, request_id: str, op: str, args: dict[str, Any]) -> None:
        fields = self.__dict__
        fields["request_id"], fields["op"], fields["args"] = request_id, op, args


@dataclass
class SimResult:
    calls: list[list[CallResult]]  # per client, in plan order
    virtual_time: float  # time of the last event processed (stale timers excepted)
    messages: int  # messages handed to the network, both directions, before faults
    events: int  # events popped from the heap, stale ones included
    connections: list[int]  # per client: connections opened (0 in datagram mode)
    arrivals: int = 0  # requests that reached the server (the crash policy's index space)
    crashes: list[tuple[int, CrashPoint]] = field(default_factory=list)  # (arrival, point)


class _Client:
    """One simulated client: its plan, its Call in progress, its links and connection."""

    __slots__ = (
        "call",
        "connected",
        "connections",
        "epoch",
        "plan",
        "position",
        "ready_at",
        "reconnect_on_timeout",
        "reply_link",
        "request_link",
        "results",
        "rng",
        "settings",
        "timer_at",
        "timer_gen",
    )

    def __init__(
        self, plan: Sequence[SimRequest], settings: RetrySettings, rng: random.Random, links: Links
    ) -> None:
        self.plan = plan
        self.position = 0  # index of the next operation of the plan
        self.settings = settings
        self.reconnect_on_timeout = settings.policy.on_timeout is OnTimeout.RECONNECT
        self.rng = rng
        self.request_link: FaultLink | None = links.request
        self.reply_link: FaultLink | None = links.reply
        self.call: Call | None = None
        self.results: list[CallResult] = []
        self.timer_at = math.inf  # time of the one live timer event
        self.timer_gen = 0  # bumped to make older timer events stale
        self.epoch = 0  # stream: bumped by a reset; older messages are discarded
        self.connected = False
        self.ready_at = 0.0  # stream: when the current connection's handshake ends
        self.connections = 0


class _Sim:
    def __init__(
        self,
        endpoint: ServerEndpoint,
        clients: list[_Client],
        stream: bool,
        latency: float,
        service_time: float,
        on_server_receive: Callable[[float, bytes], None] | None,
        crash_policy: CrashPolicy | None,
    ) -> None:
        self.endpoint = endpoint
        self.clients = clients
        self.stream = stream
        self.latency = latency
        self.handshake = 2.0 * latency
        self.service_time = service_time
        self.hook = on_server_receive
        self.heap: list[_Event] = []
        self.seq = itertools.count()
        self.messages = 0
        self.clock = 0.0
        self.crash_policy = crash_policy
        self.arrivals = 0
        self.crashes: list[tuple[int, CrashPoint]] = []
        self.server_life = 0  # bumped by a crash: admitted requests of older lives are lost

    def push(self, at: float, handler: _Handler, client: _Client, tag: int, data: Any) -> None:
        heapq.heappush(self.heap, (at, next(self.seq), handler, client, tag, data))

    # -- clients ----------------------------------------------------------------

    def start_next(self, now: float, client: _Client) -> None:
        pos = client.position
        if pos == len(client.plan):
            client.timer_gen += 1  # plan finished: any pending timer is stale
            client.timer_at = math.inf
            return
        client.position = pos + 1
        req = client.plan[pos]
        call = Call(Request(req.request_id, req.op, req.args), client.settings, client.rng)
        client.call = call
        self.send(now, client, call.start(now))
        self.arm(client, call)

    def progress(self, now: float, client: _Client, call: Call) -> None:
        """After the Call changed state: record it when done, else re-arm its timer."""
        result = call.result  # set exactly when the Call is done
        if result is not None:
            client.results.append(result)
            self.start_next(now, client)
        else:
            self.arm(client, call)

    def arm(self, client: _Client, call: Call) -> None:
        # Keep a pending timer event when it fires no later than needed: on firing
        # it re-arms itself, so a fast reply costs no heap push for its timer.
        at = call.next_timer()
        if at is not None and at < client.timer_at:
            client.timer_at = at
            client.timer_gen += 1
            self.push(at, self.on_timer, client, client.timer_gen, b"")

    def on_timer(self, now: float, client: _Client, gen: int, _: bytes) -> None:
        if gen != client.timer_gen:
            return  # superseded by an earlier timer, or the plan is finished
        self.clock = now
        client.timer_at = math.inf
        call = client.call
        assert call is not None
        # Loop: a zero backoff (``fixed``) makes the retry due at this very instant.
        while (at := call.next_timer()) is not None and at <= now:
            timeouts = call.timeouts
            data = call.on_timer(now)
            if call.timeouts != timeouts and self.stream and client.reconnect_on_timeout:
                self.broken(client)  # the client aborts its connection (OnTimeout.RECONNECT)
            if data is not None:
                self.send(now, client, data)
        self.progress(now, client, call)

    def send(self, now: float, client: _Client, data: bytes) -> None:
        self.messages += 1
        if self.stream:
            if not client.connected:
                self.connect(now, client)
            if now < client.ready_at:
                if client.ready_at < math.inf:  # else the connection never opens
                    self.push(client.ready_at, self.on_ready, client, client.epoch, data)
                return
        self.transmit(now, client, data)

    def connect(self, now: float, client: _Client) -> None:
        """Open a connection: messages wait until its handshake completes (one RTT on top)."""
        client.connected = True
        client.connections += 1
        link = client.request_link
        if link is None:
            client.ready_at = now + self.handshake
            return
        handshake = link.connect(now, client.reply_link)
        if handshake.established_at is None:  # SYN retries exhausted: connect() fails
            assert handshake.failed_at is not None
            client.ready_at = math.inf
            self.push(handshake.failed_at, self.on_refused, client, client.epoch, b"")
            return
        client.ready_at = handshake.established_at + self.handshake

    def on_refused(self, now: float, client: _Client, epoch: int, _: bytes) -> None:
        """The connection never opened: nothing queued on it was ever sent."""
        self.clock = now
        if epoch != client.epoch:
            return  # the client has given the connection up already
        self.broken(client)
        call = client.call
        assert call is not None
        call.on_connection_lost(now, sent=False)
        self.progress(now, client, call)

    def on_ready(self, now: float, client: _Client, epoch: int, data: bytes) -> None:
        self.clock = now
        if epoch == client.epoch:
            self.transmit(now, client, data)

    def transmit(self, now: float, client: _Client, data: bytes) -> None:
        epoch, link = client.epoch, client.request_link
        if link is None:
            self.push(now + self.latency, self.on_server, client, epoch, data)
            return
        verdict = link.apply(data, now)
        if verdict.reset:
            self.broken(client)
            # Same instant, but as an event: a Call that gives up here would
            # start the next one, whose send could reset again (no recursion).
            self.push(now, self.on_lost, client, epoch + 1, b"")
            return
        for d in verdict.deliveries:
            self.push(d.at + self.latency, self.on_server, client, epoch, d.data)

    def broken(self, client: _Client) -> None:
        """The connection is reset: in-flight messages die, the next send reconnects."""
        client.epoch += 1
        client.connected = False

    def on_lost(self, now: float, client: _Client, epoch: int, _: bytes) -> None:
        self.clock = now
        call = client.call
        assert call is not None
        call.on_connection_lost(now)
        self.progress(now, client, call)

    def on_reply(self, now: float, client: _Client, epoch: int, data: bytes) -> None:
        self.clock = now
        if epoch != client.epoch:
            return  # sent on a connection that has since been reset
        link = client.reply_link
        if link is None:
            self.deliver(now, client, epoch, data)
            return
        verdict = link.apply(data, now)
        if verdict.reset:
            # The server applied the request; the client only sees the reset.
            self.broken(client)
            self.on_lost(now, client, epoch + 1, b"")
            return
        for d in verdict.deliveries:
            if d.at <= now:
                self.deliver(now, client, epoch, d.data)
            else:
                self.push(d.at, self.deliver, client, epoch, d.data)

    def deliver(self, now: float, client: _Client, epoch: int, data: bytes) -> None:
        self.clock = now
        call = client.call
        assert call is not None
        # A corrupted or stale reply is rejected by the Call itself (CRC, id).
        if epoch == client.epoch and call.on_reply(data, now):
            self.progress(now, client, call)

    # -- server -----------------------------------------------------------------

    def on_server(self, now: float, client: _Client, epoch: int, data: bytes) -> None:
        self.clock = now
        if epoch != client.epoch:
            return  # the connection it rode was reset: the server never reads it
        if self.hook is not None:
            self.hook(now, data)
        arrival = self.arrivals
        self.arrivals = arrival + 1
        point = None
        if self.crash_policy is not None:
            point = self.crash_policy(arrival)
            if point is CrashPoint.BEFORE_APPLY:
                self.crash(arrival, point)
        received = self.endpoint.receive(data, now)
        if isinstance(received, Request):
            pending = (received, self.server_life, arrival, point)
            if self.service_time:
                self.push(now + self.service_time, self.on_complete, client, epoch, pending)
            else:
                self.on_complete(now, client, epoch, pending)
            return
        if point is CrashPoint.AFTER_APPLY:
            self.crash(arrival, point)  # whatever the server had to say is lost
            return
        self.reply(now, client, epoch, received)

    def on_complete(
        self,
        now: float,
        client: _Client,
        epoch: int,
        pending: tuple[Request, int, int, CrashPoint | None],
    ) -> None:
        self.clock = now
        request, life, arrival, point = pending
        if life != self.server_life:
            return  # admitted by a server that has crashed since: never executed
        data = self.endpoint.complete(request, now)
        if point is CrashPoint.AFTER_APPLY:
            self.crash(arrival, point)
            return
        self.reply(now, client, epoch, data)

    def crash(self, arrival: int, point: CrashPoint) -> None:
        """Lose the volatile state; the ledger is durable and stays as it is."""
        self.crashes.append((arrival, point))
        self.server_life += 1
        self.endpoint.count("crashes")
        if self.endpoint.reply_cache is not None:
            self.endpoint.reply_cache.clear()

    def reply(self, now: float, client: _Client, epoch: int, data: bytes | None) -> None:
        if data is not None:
            self.messages += 1
            self.push(now + self.latency, self.on_reply, client, epoch, data)

    def run(self, max_events: int) -> int:
        for client in self.clients:
            self.start_next(0.0, client)
        heap, pop, events = self.heap, heapq.heappop, 0
        while heap:
            events += 1
            if events > max_events:
                raise RuntimeError(f"simulation exceeded max_events={max_events}")
            at, _, handler, client, tag, data = pop(heap)
            handler(at, client, tag, data)
        return events


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
        links = [Links.build(link_faults, seed, f"client{i}", stream=stream) for i in range(n)]
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
