"""What every asyncio driver shares: the channel interface, an inbox, fault
application and request dispatch. Drivers themselves stay thin.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from transports.endpoint import ServerEndpoint
from transports.faults import Direction, FaultLink, LinkFaults
from transports.wire import Request


class ConnectionLost(Exception):
    """The stream broke (reset, refused, closed) while a call needed it."""


class NotSent(ConnectionLost):
    """No connection could be opened: the message provably never left."""


class ClientChannel(Protocol):
    """A client's path to one server: sends messages, receives replies."""

    async def send(self, data: bytes) -> None:
        """Send one message; raise ConnectionLost if the stream broke."""
        ...

    async def receive(self, timeout: float) -> bytes | None:
        """Next message, or None after ``timeout`` s; ConnectionLost if broken."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Links:
    """The fault links of one client/server link, one per direction."""

    request: FaultLink | None = None
    reply: FaultLink | None = None
    #: Both directions deliver every message at once, untouched (no link, or
    #: a ``passthrough`` one): a driver may skip ``through_link``.
    passthrough: bool = field(init=False)

    def __post_init__(self) -> None:
        request, reply = self.request, self.reply
        passthrough = (request is None or request.passthrough) and (
            reply is None or reply.passthrough
        )
        object.__setattr__(self, "passthrough", passthrough)

    @classmethod
    def build(cls, spec: LinkFaults | None, seed: int, name: str, *, stream: bool) -> Links:
        if spec is None or spec.is_zero:
            return cls()
        return cls(
            FaultLink(spec, seed, f"{name}/{Direction.REQUEST.value}", stream=stream),
            FaultLink(spec, seed, f"{name}/{Direction.REPLY.value}", stream=stream),
        )


_LOST = object()


class Inbox:
    """Messages for one reader, with a timed wait that costs no extra task."""

    def __init__(self) -> None:
        self._items: deque[object] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: bytes) -> None:
        self._items.append(item)
        self._wake()

    def put_lost(self) -> None:
        self._items.append(_LOST)
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

    CPython's selector transports pass their ``max_size`` (256 KiB) to every
    receive call, and the bytes object it allocates is above glibc's mmap
    threshold unless that threshold has adapted upwards (glibc raises it
    when a large mmapped block is freed whole; these are first shrunk to the
    message's size), so each message cost an mmap, an mremap and a munmap:
    seen with ``strace -c`` on our UDP server and later our TCP server, not
    on the echo ceiling. Other loops (uvloop) have no such attribute and are
    left as they are.
    """
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = size  # type: ignore[attr-defined]


def through_link(
    link: FaultLink | None,
    data: bytes,
    deliver: Callable[[bytes], None],
    reset: Callable[[], None],
) -> bool:
    """Pass ``data`` through a fault link; False when the link reset the stream."""
    if link is None:
        deliver(data)
        return True
    if link.passthrough:  # what apply() would decide, without building the Verdict
        link.count_passthrough()
        deliver(data)
        return True
    loop = asyncio.get_running_loop()
    now = loop.time()
    verdict = link.apply(data, now)
    if verdict.reset:
        reset()
        return False
    for delivery in verdict.deliveries:
        if delivery.at <= now:
            deliver(delivery.data)
        else:
            loop.call_at(delivery.at, deliver, delivery.data)
    return True


def dispatch(
    endpoint: ServerEndpoint,
    pool: concurrent.futures.Executor | None,
    data: bytes,
    respond: Callable[[bytes], None],
    *,
    max_reply: int | None = None,
    on_done: Callable[[], None] | None = None,
) -> None:
    """Run one request: on the event loop, or in ``pool`` if its operation may block.

    Decoding and deduplication (``admit``) always run inline: they are cheap,
    so malformed input is rejected without ever occupying a worker thread.
    ``max_reply`` caps the reply size (``ServerEndpoint.limit_reply``);
    ``on_done`` runs once the request is finished, replied to or not.
    """
    now = time.monotonic()  # the clock ``ServerContext.answer`` uses

    def reply_with(reply: bytes | None) -> None:
        try:
            reply = endpoint.limit_reply(reply, max_reply)
            if reply is not None:
                respond(reply)
        finally:
            if on_done is not None:
                on_done()

    admitted = endpoint.admit(data, now)
    if not isinstance(admitted, Request):
        reply_with(admitted)
        return
    if pool is None or not endpoint.blocks(admitted):
        reply_with(endpoint.finish(admitted, now))
        return
    # Only here: get_running_loop() costs a getpid() syscall (CPython's fork check).
    loop = asyncio.get_running_loop()
    try:
        future = loop.run_in_executor(pool, endpoint.finish, admitted, now)
    except RuntimeError:  # the pool is shutting down: the server is stopping
        endpoint.count("dropped_shutdown")
        reply_with(None)
        return

    def done(f: asyncio.Future[bytes]) -> None:
        ok = not f.cancelled() and f.exception() is None
        reply_with(f.result() if ok else None)

    future.add_done_callback(done)


@dataclass(frozen=True)
class ServerLimits:
    """Resource limits every server enforces (docs/SECURITY.md, "Limits")."""

    max_connections: int = 1024  # TCP: further connections are closed at once
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
        if min(self.max_connections, self.max_in_flight_per_connection, self.max_in_flight) < 1:
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
        #: Requests run on the event loop (no pool, or a service that never blocks).
        self.inline = pool is None or not endpoint.needs_pool
        self.host = host
        self.port = port
        self.pool = pool
        self.limits = limits or ServerLimits()
        self.faults = faults
        self.seed = seed
        self._on_bad_input = on_bad_input
        self.connections: set[object] = set()
        self._peers = 0
        self.in_flight = 0
        self.peak_in_flight = 0  # highest in_flight seen: tests check the caps hold
        # Connections waiting for in_flight to drop, oldest first (dicts keep order).
        self._parked: dict[object, Callable[[], None]] = {}

    @property
    def overloaded(self) -> bool:
        return self.in_flight >= self.limits.max_in_flight

    def admit(self, connection: object) -> bool:
        if len(self.connections) >= self.limits.max_connections:
            self.endpoint.count("refused_connections")
            return False
        self.connections.add(connection)
        self.endpoint.count("connections")
        return True

    def release(self, connection: object) -> None:
        self.connections.discard(connection)
        self._parked.pop(connection, None)

    def park(self, connection: object, resume: Callable[[], None]) -> None:
        """Call ``resume`` once the server is no longer overloaded."""
        self._parked[connection] = resume

    def links_for_peer(self, *, stream: bool) -> Links:
        """Server-side fault links for the next peer, numbered in arrival order."""
        self._peers += 1
        return Links.build(self.faults, self.seed, f"server-peer{self._peers}", stream=stream)

    def execute(
        self,
        data: bytes,
        respond: Callable[[bytes], None],
        *,
        max_reply: int | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        """``dispatch`` one request, counting it in flight until it is finished.

        Drivers answer a request on the event loop with ``answer`` instead,
        when no fault link stands between it and the reply: no callbacks.
        """
        self._started()

        def finished() -> None:
            self._finished(on_done)

        dispatch(self.endpoint, self.pool, data, respond, max_reply=max_reply, on_done=finished)

    def answer(self, data: bytes, max_reply: int | None = None) -> bytes | None:
        """Run one request to its reply on the event loop (``inline`` contexts only).

        Counted in flight while it runs, like ``execute``.
        """
        self._started()
        try:
            # The default loop's clock, read directly: get_running_loop() costs a getpid().
            now = time.monotonic()
            endpoint = self.endpoint
            admitted = endpoint.admit(data, now)
            reply = endpoint.finish(admitted, now) if isinstance(admitted, Request) else admitted
            return reply if max_reply is None else endpoint.limit_reply(reply, max_reply)
        finally:
            self._finished(None)

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
