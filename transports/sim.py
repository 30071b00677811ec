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
after a break opens a connection (counted) and waits one handshake RTT
(``2 * latency``) before the request leaves. A REQUEST verdict with
``reset`` breaks the connection before the request is sent: the Call learns of
it at the same instant (``TcpChannel.send`` raises at once). A REPLY verdict
with ``reset`` means the server applied the request but the connection broke;
the Call learns of it when the reset reaches it (the reply's arrival time).
Anything still in flight on an old epoch is discarded on arrival.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from transports.call import Call, CallResult, RetrySettings
from transports.driver import Links
from transports.endpoint import ServerEndpoint
from transports.faults import FaultLink, FaultSpec
from transports.wire import Request

__all__ = ["SimRequest", "SimResult", "simulate"]

# Every event is a plain tuple (time, seq, handler, client, tag, data); ``tag``
# is an epoch (messages) or a generation (timers); ``data`` is bytes, or the
# admitted Request a server finishes. No per-event objects.
_Handler = Callable[[float, int, int, Any], None]
_Event = tuple[float, int, _Handler, int, int, Any]


@dataclass(frozen=True)
class SimRequest:
    """One logical operation a simulated client performs."""

    request_id: str
    op: str
    args: dict[str, Any]


@dataclass
class SimResult:
    calls: list[list[CallResult]]  # per client, in plan order
    virtual_time: float  # time of the last event processed (stale timers excepted)
    messages: int  # messages handed to the network, both directions, before faults
    events: int  # events popped from the heap, stale ones included
    connections: list[int]  # per client: connections opened (0 in datagram mode)


class _Sim:
    def __init__(
        self,
        endpoint: ServerEndpoint,
        plans: Sequence[Sequence[SimRequest]],
        settings: Callable[[int], RetrySettings],
        faults: FaultSpec | None,
        seed: int,
        stream: bool,
        latency: float,
        service_time: float,
        on_server_receive: Callable[[float, bytes], None] | None,
    ) -> None:
        n = len(plans)
        self.endpoint = endpoint
        self.plans = plans
        self.settings = [settings(i) for i in range(n)]
        self.rngs = [random.Random(f"{seed}/client{i}") for i in range(n)]
        links = [Links.build(faults, seed, f"client{i}", stream=stream) for i in range(n)]
        self.request_links: list[FaultLink | None] = [link.request for link in links]
        self.reply_links: list[FaultLink | None] = [link.reply for link in links]
        self.stream = stream
        self.latency = latency
        self.handshake = 2.0 * latency
        self.service_time = service_time
        self.hook = on_server_receive
        self.heap: list[_Event] = []
        self.seq = itertools.count()
        self.calls: list[Call | None] = [None] * n
        self.results: list[list[CallResult]] = [[] for _ in range(n)]
        self.position = [0] * n
        self.timer_at = [math.inf] * n  # time of the one live timer event per client
        self.timer_gen = [0] * n  # bumped to make older timer events stale
        self.epoch = [0] * n
        self.connected = [False] * n
        self.ready_at = [0.0] * n  # stream: when the current connection's handshake ends
        self.connections = [0] * n
        self.messages = 0
        self.clock = 0.0

    # -- clients ----------------------------------------------------------------

    def start_next(self, now: float, i: int) -> None:
        plan, pos = self.plans[i], self.position[i]
        if pos == len(plan):
            self.timer_gen[i] += 1  # plan finished: any pending timer is stale
            self.timer_at[i] = math.inf
            return
        self.position[i] = pos + 1
        req = plan[pos]
        call = Call(Request(req.request_id, req.op, req.args), self.settings[i], self.rngs[i])
        self.calls[i] = call
        self.send(now, i, call.start(now))
        self.arm(i, call)

    def progress(self, now: float, i: int, call: Call) -> None:
        """After the Call changed state: record it when done, else re-arm its timer."""
        if call.done:
            assert call.result is not None
            self.results[i].append(call.result)
            self.start_next(now, i)
        else:
            self.arm(i, call)

    def arm(self, i: int, call: Call) -> None:
        # Keep a pending timer event when it fires no later than needed: on firing
        # it re-arms itself, so a fast reply costs no heap push for its timer.
        at = call.next_timer()
        if at is not None and at < self.timer_at[i]:
            self.timer_at[i] = at
            self.timer_gen[i] += 1
            heapq.heappush(
                self.heap, (at, next(self.seq), self.on_timer, i, self.timer_gen[i], b"")
            )

    def on_timer(self, now: float, i: int, gen: int, _: bytes) -> None:
        if gen != self.timer_gen[i]:
            return  # superseded by an earlier timer, or the plan is finished
        self.clock = now
        self.timer_at[i] = math.inf
        call = self.calls[i]
        assert call is not None
        # Loop: a zero backoff (``fixed``) makes the retry due at this very instant.
        while (at := call.next_timer()) is not None and at <= now:
            data = call.on_timer(now)
            if data is not None:
                self.send(now, i, data)
        self.progress(now, i, call)

    def send(self, now: float, i: int, data: bytes) -> None:
        self.messages += 1
        if self.stream:
            if not self.connected[i]:
                self.connected[i] = True
                self.connections[i] += 1
                self.ready_at[i] = now + self.handshake
            if now < self.ready_at[i]:
                ready = self.ready_at[i]
                heapq.heappush(
                    self.heap, (ready, next(self.seq), self.on_ready, i, self.epoch[i], data)
                )
                return
        self.transmit(now, i, data)

    def on_ready(self, now: float, i: int, epoch: int, data: bytes) -> None:
        self.clock = now
        if epoch == self.epoch[i]:
            self.transmit(now, i, data)

    def transmit(self, now: float, i: int, data: bytes) -> None:
        epoch, link = self.epoch[i], self.request_links[i]
        if link is None:
            event = (now + self.latency, next(self.seq), self.on_server, i, epoch, data)
            heapq.heappush(self.heap, event)
            return
        verdict = link.apply(data, now)
        if verdict.reset:
            self.broken(i)
            # Same instant, but as an event: a Call that gives up here would
            # start the next one, whose send could reset again (no recursion).
            heapq.heappush(self.heap, (now, next(self.seq), self.on_lost, i, epoch + 1, b""))
            return
        for d in verdict.deliveries:
            event = (d.at + self.latency, next(self.seq), self.on_server, i, epoch, d.data)
            heapq.heappush(self.heap, event)

    def broken(self, i: int) -> None:
        """The connection is reset: in-flight messages die, the next send reconnects."""
        self.epoch[i] += 1
        self.connected[i] = False

    def on_lost(self, now: float, i: int, epoch: int, _: bytes) -> None:
        self.clock = now
        call = self.calls[i]
        assert call is not None
        call.on_connection_lost(now)
        self.progress(now, i, call)

    def on_reply(self, now: float, i: int, epoch: int, data: bytes) -> None:
        self.clock = now
        if epoch != self.epoch[i]:
            return  # sent on a connection that has since been reset
        link = self.reply_links[i]
        if link is None:
            self.deliver(now, i, epoch, data)
            return
        verdict = link.apply(data, now)
        if verdict.reset:
            # The server applied the request; the client only sees the reset.
            self.broken(i)
            self.on_lost(now, i, epoch + 1, b"")
            return
        for d in verdict.deliveries:
            if d.at <= now:
                self.deliver(now, i, epoch, d.data)
            else:
                heapq.heappush(self.heap, (d.at, next(self.seq), self.deliver, i, epoch, d.data))

    def deliver(self, now: float, i: int, epoch: int, data: bytes) -> None:
        self.clock = now
        call = self.calls[i]
        assert call is not None
        # A corrupted or stale reply is rejected by the Call itself (CRC, id).
        if epoch == self.epoch[i] and call.on_reply(data, now):
            self.progress(now, i, call)

    # -- server -----------------------------------------------------------------

    def on_server(self, now: float, i: int, epoch: int, data: bytes) -> None:
        self.clock = now
        if epoch != self.epoch[i]:
            return  # the connection it rode was reset: the server never reads it
        if self.hook is not None:
            self.hook(now, data)
        admitted = self.endpoint.admit(data, now)
        if isinstance(admitted, Request):
            if self.service_time:
                done = now + self.service_time
                heapq.heappush(
                    self.heap, (done, next(self.seq), self.on_finish, i, epoch, admitted)
                )
                return
            admitted = self.endpoint.finish(admitted, now)
        self.reply(now, i, epoch, admitted)

    def on_finish(self, now: float, i: int, epoch: int, request: Request) -> None:
        self.clock = now
        self.reply(now, i, epoch, self.endpoint.finish(request, now))

    def reply(self, now: float, i: int, epoch: int, data: bytes | None) -> None:
        if data is not None:
            self.messages += 1
            event = (now + self.latency, next(self.seq), self.on_reply, i, epoch, data)
            heapq.heappush(self.heap, event)

    def run(self, max_events: int) -> int:
        for i in range(len(self.plans)):
            self.start_next(0.0, i)
        heap, pop, events = self.heap, heapq.heappop, 0
        while heap:
            events += 1
            if events > max_events:
                raise RuntimeError(f"simulation exceeded max_events={max_events}")
            at, _, handler, i, tag, data = pop(heap)
            handler(at, i, tag, data)
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
) -> SimResult:
    """Run every client's plan to completion in virtual time (see the module doc).

    The network drains before returning: a late duplicate still reaches the
    server after its client has finished, as it would on a real network.
    Raises ``RuntimeError`` after ``max_events`` events.
    """
    if latency < 0 or service_time < 0:
        raise ValueError("latency and service_time must be >= 0")
    sim = _Sim(
        endpoint, plans, settings, faults, seed, stream, latency, service_time, on_server_receive
    )
    events = sim.run(max_events)
    return SimResult(
        calls=sim.results,
        virtual_time=sim.clock,
        messages=sim.messages,
        events=events,
        connections=sim.connections,
    )
