"""What every asyncio driver shares: the channel interface, an inbox, fault
application and request dispatch. Drivers themselves stay thin.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from transports.endpoint import ServerEndpoint
from transports.faults import Direction, FaultLink, FaultSpec


class ConnectionLost(Exception):
    """The stream broke (reset, refused, closed) while a call needed it."""


class ClientChannel(Protocol):
    """A client's path to one server: sends messages, receives replies."""

    async def send(self, data: bytes) -> None:
        """Send one message; raise ConnectionLost if the stream broke."""
        ...

    async def receive(self, timeout: float) -> bytes | None:
        """Next message, or None after ``timeout`` s; ConnectionLost if broken."""
        ...

    async def close(self) -> None: ...


@dataclass
class Links:
    """The fault links of one client/server link, one per direction."""

    request: FaultLink | None = None
    reply: FaultLink | None = None

    @classmethod
    def build(cls, spec: FaultSpec | None, seed: int, name: str, *, stream: bool) -> Links:
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
) -> None:
    """Run one request: inline for cheap services, in ``pool`` for blocking ones."""
    loop = asyncio.get_running_loop()
    if pool is None or not endpoint.blocking:
        reply = endpoint.handle(data, loop.time())
        if reply is not None:
            respond(reply)
        return
    future = loop.run_in_executor(pool, endpoint.handle, data, loop.time())

    def done(f: asyncio.Future[bytes | None]) -> None:
        if not f.cancelled() and f.exception() is None and (reply := f.result()) is not None:
            respond(reply)

    future.add_done_callback(done)


@dataclass(frozen=True)
class ServerLimits:
    """Resource limits every server enforces (see README, "Limits")."""

    max_connections: int = 1024
    frame_timeout: float = 10.0  # a partial frame that stalls this long is closed
    idle_timeout: float = 300.0  # a connection silent this long is closed
    max_peers_tracked: int = 4096  # per-peer fault state kept for UDP


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
        faults: FaultSpec | None = None,
        seed: int = 0,
        on_bad_input: Callable[[str], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.host = host
        self.port = port
        self.pool = pool
        self.limits = limits or ServerLimits()
        self.faults = faults
        self.seed = seed
        self._on_bad_input = on_bad_input
        self.connections: set[object] = set()
        self._peers = 0

    def admit(self, connection: object) -> bool:
        if len(self.connections) >= self.limits.max_connections:
            self.endpoint.count("refused_connections")
            return False
        self.connections.add(connection)
        self.endpoint.count("connections")
        return True

    def release(self, connection: object) -> None:
        self.connections.discard(connection)

    def links_for_peer(self, *, stream: bool) -> Links:
        """Server-side fault links for the next peer, numbered in arrival order."""
        self._peers += 1
        return Links.build(self.faults, self.seed, f"server-peer{self._peers}", stream=stream)

    def execute(self, data: bytes, respond: Callable[[bytes], None]) -> None:
        dispatch(self.endpoint, self.pool, data, respond)

    def log_bad_input(self, what: str) -> None:
        if self._on_bad_input is not None:
            self._on_bad_input(what)
