"""The fault proxy as a library object: listen, hand clients to the TCP or UDP relay, close.

``FaultProxy`` owns the listening socket, the live TCP connections or UDP
sessions (bounded by ``max_connections``; idle UDP sessions expire) and the
counters they all update.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from transports.proxy.config import ProxyConfig
from transports.proxy.stats import ProxyStats
from transports.proxy.tcp import TcpConnection
from transports.proxy.udp import UdpListener, UdpSession


class FaultProxy:
    """The proxy as a library object: ``await start()``, ``port``, ``await close()``."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.stats = ProxyStats()
        self.port = 0
        self.udp_transport: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[TcpConnection] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._sessions: collections.OrderedDict[Any, UdpSession] = collections.OrderedDict()
        self._count = 0
        self._sweeper: asyncio.Task[None] | None = None
        #: The loop time the proxy started at: timed faults (a partition) count from it.
        self.started = 0.0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        host, port = self.config.listen
        if self.config.transport == "tcp":
            self._server = await asyncio.start_server(self._accept, host, port)
            self.port = self._server.sockets[0].getsockname()[1]
        else:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: UdpListener(self), local_addr=(host, port)
            )
            self.udp_transport = transport
            self.port = transport.get_extra_info("sockname")[1]
            self._sweeper = asyncio.create_task(self._sweep_sessions())

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.reset()
        if self._handlers:  # let each connection's handler finish its clean-up
            await asyncio.wait(self._handlers, timeout=2.0)
        for session in self._sessions.values():
            session.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.udp_transport is not None:
            self.udp_transport.close()
        await asyncio.sleep(0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.config.max_connections:
            self.stats.totals["refused"] += 1
            writer.transport.abort()
            return
        self._count += 1
        self.stats.totals["connections"] += 1
        connection = TcpConnection(self, self._count)
        self._connections.add(connection)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        try:
            await connection.run(reader, writer)
        finally:
            self._connections.discard(connection)
            self._handlers.discard(handler)

    def udp_session(self, addr: Any) -> UdpSession:
        session = self._sessions.get(addr)
        if session is not None:
            self._sessions.move_to_end(addr)
            return session
        if len(self._sessions) >= self.config.max_connections:
            _, oldest = self._sessions.popitem(last=False)  # bounded: forget the oldest
            oldest.close()
            self.stats.totals["evicted"] += 1
        self._count += 1
        self.stats.totals["sessions"] += 1
        session = self._sessions[addr] = UdpSession(self, addr, self._count)
        return session

    async def _sweep_sessions(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.config.idle_timeout / 2))
            cutoff = loop.time() - self.config.idle_timeout
            for addr, session in list(self._sessions.items()):
                if session.last_activity < cutoff:
                    del self._sessions[addr]
                    session.close()
                    self.stats.totals["expired"] += 1
