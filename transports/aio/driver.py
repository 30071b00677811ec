"""What every asyncio driver shares: the channel interface, an inbox, fault
links on the event loop, and the server context that runs each request
through the endpoint's pipeline. Drivers themselves stay thin.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import socket
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from transports.admission import Peer
from transports.aio.slots import ConnectionSlots
from transports.endpoint import ServerEndpoint
from transports.faults import FaultLink, LinkFaults
from transports.links import Links
from transports.wire import Request


class ConnectionLost(Exception):
    """The stream broke (reset, refused, closed) while a call needed it."""


class NotSent(ConnectionLost):
    """No connection could be opened: the message provably never left."""


class WrongProtocol(ConnectionLost):
    """The peer's first bytes are not this protocol: it speaks something else.

    Retrying cannot help, so ``RpcClient.call`` raises it instead of retrying;
    ``received`` is the start of what the peer sent, for the message.
    """

    def __init__(self, received: bytes) -> None:
        self.received = received
        super().__init__(f"the reply is not in the testbed protocol: it began {shown(received)}")


def shown(data: bytes, limit: int = 60) -> str:
    """A short printable rendering of a peer's bytes, for one line of a message."""
    text = data[:limit].decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return repr(text + ("..." if len(data) > limit else ""))


class ClientChannel(Protocol):
    """A client's path to one server: sends messages, receives replies."""

    async def send(self, data: bytes) -> None:
        """Send one message; raise ConnectionLost if the stream broke."""
        ...

    async def receive(self, timeout: float) -> bytes | None:
        """Next message, or None after ``timeout`` s; ConnectionLost if broken."""
        ...

    async def abandon(self) -> None:
        """Give the connection up (TCP: abort it); the next send opens a new one."""
        ...

    async def close(self) -> None: ...


_LOST = object()


class Inbox:
    """Messages for one reader, with a timed wait that costs no extra task."""

    def __init__(self) -> None:
        self._items: deque[object] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: bytes) -> None:
        self._items.append(item)
        self._wake()

    def put_lost(self, error: ConnectionLost | None = None) -> None:
        """The stream broke; ``get`` raises ``error`` (default: a plain ConnectionLost)."""
        self._items.append(_LOST if error is None else error)
        self._wake()

    def clear(self) -> None:
        self._items.clear()

    async def get(self, timeout: float) -> bytes | None:
        if not self._items and timeout > 0:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            handle = loop.call_later(timeout, _resolve, waiter)
            try:
                await waiter
            finally:
                handle.cancel()
                self._waiter = None
        if not self._items:
            return None
        item = self._items.popleft()
        if item is _LOST:
            raise ConnectionLost("connection lost")
        if isinstance(item, ConnectionLost):
            raise item
        assert isinstance(item, bytes)
        return item

    def _wake(self) -> None:
        if self._waiter is not None:
            _resolve(self._waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


#: Bytes a TCP read asks for: room for several maximal frames, and under
#: glibc's default mmap threshold (128 KiB); see ``limit_read_size``.
STREAM_READ_SIZE = 64 * 1024


def limit_read_size(transport: asyncio.BaseTransport, size: int) -> None:
    """Make the transport read at most ``size`` bytes per recv()/recvfrom().

    CPython's selector transports ask for 256 KiB per read, a buffer above
    glibc's mmap threshold: an mmap, mremap and munmap per message
    (docs/PERFORMANCE.md). Other loops (uvloop) have no such attribute and
    are left as they are.
    """
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = size  # type: ignore[attr-defined]


async def until_delivered(link: FaultLink | None) -> None:
    """Wait until ``link`` has delivered everything it holds back (a closing sender).

    Closing a socket does not take back what the network still carries: TCP
    sends its queue before the FIN, and datagrams in flight still arrive. The
    fault layer holds such messages itself, so a channel waits for them first.
    """
    if link is not None:
        loop = asyncio.get_running_loop()
        wait = link.last_delivery_at - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)


def through_link(
    link: FaultLink | None,
    data: bytes,
    deliver: Callable[[bytes], None],
    reset: Callable[[], None],
) -> bool:
    """Pass ``data`` through a fault link; False when the link reset the stream.

    Deliveries due later are scheduled on the running loop's clock.
    """
    if link is None:
        deliver(data)
        return True
    if link.passthrough:  # what apply() decides, without building a Verdict
        link.count_passthrough()
        deliver(data)
        return True
    loop = asyncio.get_running_loop()
    now = loop.time()
    verdict = link.apply(data, now)
    if verdict.reset:
        reset()
        return False
    order = _stream_order(link) if link.stream else None
    for delivery in verdict.deliveries:
        if order is not None:
            order.deliver(loop, now, delivery.at, deliver, delivery.data)
        elif delivery.at <= now:
            deliver(delivery.data)
        else:
            loop.call_at(delivery.at, deliver, delivery.data)
    return True


class _StreamOrder:
    """Keeps one connection's deliveries in the order its stream link decided them.

    A byte stream never reorders, and the link gives nondecreasing delivery
    times, but the loop runs callbacks due at the same instant in no fixed
    order (its timer heap is not stable), and the link gives every message
    held behind a retransmission the same time; a message due now could also
    overtake one that is due but not yet run (a late loop). So a delivery
    that would tie with or overtake a pending one is moved just after it.
    """

    __slots__ = ("last", "pending", "stream")

    def __init__(self, stream: int) -> None:
        self.stream = stream  # the link's ``streams`` when this connection began
        self.last = -math.inf  # time of the latest delivery scheduled
        self.pending = 0  # scheduled, not yet run

    def deliver(
        self,
        loop: asyncio.AbstractEventLoop,
        now: float,
        at: float,
        deliver: Callable[[bytes], None],
        data: bytes,
    ) -> None:
        if self.pending:  # after what is still to come: later, or due and not yet run
            at = max(at, math.nextafter(self.last, math.inf))
        elif at <= now:
            deliver(data)
            return
        self.pending += 1
        self.last = at
        loop.call_at(at, self._run, deliver, data)

    def _run(self, deliver: Callable[[bytes], None], data: bytes) -> None:
        self.pending -= 1
        deliver(data)


_ORDERS: weakref.WeakKeyDictionary[FaultLink, _StreamOrder] = weakref.WeakKeyDictionary()


def _stream_order(link: FaultLink) -> _StreamOrder:
    """The order keeper of ``link``'s current connection (a new one starts afresh)."""
    order = _ORDERS.get(link)
    if order is None or order.stream != link.streams:
        order = _ORDERS[link] = _StreamOrder(link.streams)
    return order


@dataclass(frozen=True)
class ServerLimits:
    """Resource limits every server enforces (docs/SECURITY.md, "Limits")."""

    max_connections: int = 1024  # TCP: further connections are closed at once
    #: TCP: connections from one host; further ones from it are closed at once.
    max_connections_per_source: int = 256
    frame_timeout: float = 10.0  # TCP: a frame not complete this long after it began
    idle_timeout: float = 300.0  # TCP: a connection silent this long is closed
    max_peers_tracked: int = 4096  # per-peer fault state kept for UDP
    #: TCP: requests of one connection queued or executing; then it stops reading.
    max_in_flight_per_connection: int = 32
    #: Requests of the whole server queued or executing; then TCP connections
    #: stop reading and UDP datagrams are dropped (and counted).
    max_in_flight: int = 1024
    #: UDP: a reply is at most this many times the size of the datagram it
    #: answers (QUIC's anti-amplification factor, RFC 9000 section 8).
    amplification_factor: float = 3.0

    def __post_init__(self) -> None:
        if (
            min(
                self.max_connections,
                self.max_connections_per_source,
                self.max_in_flight_per_connection,
                self.max_in_flight,
            )
            < 1
        ):
            raise ValueError("connection and in-flight limits must be at least 1")
        # "not x > 0" also refuses NaN.
        if not (self.frame_timeout > 0 and self.idle_timeout > 0):
            raise ValueError("frame and idle timeouts must be positive")
        if not self.amplification_factor >= 1:
            raise ValueError("amplification_factor must be at least 1")


class ServerContext:
    """What a running server's connections share: endpoint, pool, limits, faults."""

    def __init__(
        self,
        endpoint: ServerEndpoint,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        pool: concurrent.futures.Executor | None = None,
        expensive_pool: concurrent.futures.Executor | None = None,
        limits: ServerLimits | None = None,
        faults: LinkFaults | None = None,
        seed: int = 0,
        on_bad_input: Callable[[str], None] | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.endpoint = endpoint
        #: A socket already bound (and, for TCP, listening) to serve on instead
        #: of binding host:port, e.g. one of several SO_REUSEPORT sockets.
        self.sock = sock
        self.host = host
        self.port = port
        self.pool = pool
        #: Where the endpoint's expensive requests run (logins): their own
        #: threads, so they never queue ahead of cheap blocking work.
        self.expensive_pool = expensive_pool or pool
        self.limits = limits or ServerLimits()
        self.faults = faults
        self.seed = seed
        self._on_bad_input = on_bad_input
        limits = self.limits
        self.slots = ConnectionSlots(
            limits.max_connections, limits.max_connections_per_source, endpoint.count
        )
        self._peers = 0
        self.in_flight = 0
        self.peak_in_flight = 0  # highest in_flight seen: tests check the caps hold
        # Connections waiting for in_flight to drop, oldest first (dicts keep order).
        self._parked: dict[object, Callable[[], None]] = {}

    @property
    def overloaded(self) -> bool:
        return self.in_flight >= self.limits.max_in_flight

    @property
    def connections(self) -> set[object]:
        """The TCP connections holding a slot (``slots``)."""
        return self.slots.connections

    def admit(self, connection: object, host: str, reap: Callable[[], int] | None = None) -> bool:
        """Count a new TCP connection from ``host``, or refuse it (see ``ConnectionSlots``)."""
        return self.slots.admit(connection, host, reap)

    def release(self, connection: object, host: str) -> None:
        """Uncount ``connection`` (closed, or its peer has); idempotent."""
        self.slots.release(connection, host)
        self._parked.pop(connection, None)

    def park(self, connection: object, resume: Callable[[], None]) -> None:
        """Call ``resume`` once the server is no longer overloaded."""
        self._parked[connection] = resume

    def links_for_peer(self, *, stream: bool) -> Links:
        """Server-side fault links for the next peer, numbered in arrival order."""
        self._peers += 1
        name = f"server-peer{self._peers}"
        return Links.build(self.faults, self.seed, name, stream=stream, always=True)

    def execute(
        self,
        data: bytes,
        respond: Callable[[bytes], None],
        *,
        budget: int | None = None,
        on_done: Callable[[], None] | None = None,
        peer: Peer | None = None,
    ) -> None:
        """Run one request through the endpoint; ``respond`` gets its reply, if any.

        On the event loop, or, for a request the service may block on, in the
        worker pool. Decoding and deduplication (``receive``) always run here:
        they are cheap, so malformed input never occupies a worker thread.
        Counted in flight until finished; ``on_done`` runs then, replied or not.
        Expensive requests (which the endpoint admitted) run in
        ``expensive_pool``. ``peer``: where the request came from.
        """
        self._started()
        endpoint = self.endpoint
        now = time.monotonic()  # the default loop's clock: get_running_loop() costs a getpid()
        received = endpoint.receive(data, now, budget, peer)
        if isinstance(received, Request):
            expensive_pool = self.expensive_pool
            if (
                expensive_pool is not None
                and received.op in endpoint.expensive_ops
                and endpoint.expensive(received)
            ):
                self._complete_in_pool(
                    expensive_pool, received, now, budget, respond, on_done, peer
                )
                return
            if self.pool is not None and endpoint.blocks(received):
                self._complete_in_pool(self.pool, received, now, budget, respond, on_done, peer)
                return
            received = endpoint.complete(received, now, budget, peer)
        try:
            if received is not None:
                respond(received)
        finally:
            self._finished(on_done)

    def _complete_in_pool(
        self,
        pool: concurrent.futures.Executor,
        request: Request,
        now: float,
        budget: int | None,
        respond: Callable[[bytes], None],
        on_done: Callable[[], None] | None,
        peer: Peer | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        complete = self.endpoint.complete
        try:
            future = loop.run_in_executor(pool, complete, request, now, budget, peer)
        except RuntimeError:  # the pool is shutting down: the server is stopping
            self.endpoint.count("dropped_shutdown")
            self.endpoint.abandon(request, peer)
            self._reply(None, respond, on_done)
            return

        def done(f: asyncio.Future[bytes | None]) -> None:
            if f.cancelled():  # still queued when the server stopped: never ran
                self.endpoint.count("dropped_shutdown")
                self.endpoint.abandon(request, peer)
            ok = not f.cancelled() and f.exception() is None
            self._reply(f.result() if ok else None, respond, on_done)

        future.add_done_callback(done)

    def _reply(
        self,
        reply: bytes | None,
        respond: Callable[[bytes], None],
        on_done: Callable[[], None] | None,
    ) -> None:
        try:
            if reply is not None:
                respond(reply)
        finally:
            self._finished(on_done)

    def _started(self) -> None:
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight

    def _finished(self, on_done: Callable[[], None] | None) -> None:
        self.in_flight -= 1
        if on_done is not None:
            on_done()
        while self._parked and not self.overloaded:
            connection = next(iter(self._parked))
            self._parked.pop(connection)()

    def log_bad_input(self, what: str) -> None:
        if self._on_bad_input is not None:
            self._on_bad_input(what)
