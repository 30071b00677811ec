"""The simulator's event loop: clients, network and server as handlers on one heap.

Each client is a ``_Client`` (its plan, its ``Call`` in progress, its fault
links and connection); ``_Sim`` moves bytes between them and the one
``ServerEndpoint`` in virtual time. See the package docstring for the model.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from transports.call import Call, CallResult, RetrySettings
from transports.endpoint import ServerEndpoint
from transports.faults import FaultLink
from transports.links import Links
from transports.retry import OnTimeout
from transports.sim.crashes import CrashPoint, CrashPolicy
from transports.sim.types import SimRequest
from transports.wire import Request

# Every event is a plain tuple (time, seq, handler, client, tag, data); ``tag``
# is an epoch (messages) or a generation (timers); ``data`` is bytes, or, for a
# server completing a request, (Request, server life, arrival, crash point).
# Ties in time break by the sequence number, so the order is deterministic.
_Handler = Callable[[float, "_Client", int, Any], None]
_Event = tuple[float, int, _Handler, "_Client", int, Any]


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
        req = client.plan[pos]
        if req.not_before > now:
            # Not due yet: wait for it, with no live timer (the last call is done).
            client.timer_gen += 1
            client.timer_at = math.inf
            self.push(req.not_before, self.on_due, client, 0, b"")
            return
        client.position = pos + 1
        call = Call(Request(req.request_id, req.op, req.args), client.settings, client.rng)
        client.call = call
        self.send(now, client, call.start(now))
        self.arm(client, call)

    def on_due(self, now: float, client: _Client, _tag: int, _: bytes) -> None:
        self.clock = now
        self.start_next(now, client)

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
        if call is None or call.done:
            return  # the calls that wrote into it have given up already
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
