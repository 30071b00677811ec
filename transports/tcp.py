"""TCP driver: length-prefixed frames over asyncio streams (thin glue).

The server reads frames, hands each to the endpoint and writes the reply
frame. ``framing="seed"`` speaks the lab's protocol instead (64-byte ASCII
length header in, plain text out) through a text handler, so the lab's own
clients work unmodified. Limits: ``max_connections`` (extra connections are
closed at once), a stalled partial frame is closed after ``frame_timeout`` s,
an idle connection after ``idle_timeout`` s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from transports.driver import ConnectionLost, Inbox, Links, ServerContext, through_link
from transports.framing import FramingError, LengthPrefixDecoder, SeedDecoder, frame

#: Seed protocol handler: request text -> (reply text, close the connection?).
SeedHandler = Callable[[str], tuple[str, bool]]


class _ServerConnection(asyncio.Protocol):
    def __init__(self, ctx: ServerContext, seed_handler: SeedHandler | None) -> None:
        self.ctx = ctx
        self.seed_handler = seed_handler
        self.decoder: LengthPrefixDecoder | SeedDecoder = (
            SeedDecoder() if seed_handler else LengthPrefixDecoder()
        )
        self.transport: asyncio.Transport | None = None
        self.links = Links()
        self._last_activity = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.ctx.admit(self):
            transport.abort()
            return
        self.links = self.ctx.links_for_peer(stream=True)
        self._touch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.release(self)
        if self._timer is not None:
            self._timer.cancel()

    def data_received(self, data: bytes) -> None:
        self._touch()
        try:
            self.decoder.feed(data)
            while (message := self.decoder.next_message()) is not None:
                if isinstance(message, str):
                    self._on_seed_text(message)
                else:
                    through_link(self.links.request, message, self._execute, self._reset)
        except FramingError as err:
            self.ctx.endpoint.count("rejected_framing")
            self.ctx.log_bad_input(f"closing connection: {err}")
            self._reset()

    def _execute(self, message: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.ctx.execute(message, self._respond)

    def _respond(self, reply: bytes) -> None:
        through_link(self.links.reply, reply, self._write, self._reset)

    def _write(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(reply))

    def _on_seed_text(self, text: str) -> None:
        assert self.seed_handler is not None and self.transport is not None
        reply, close = self.seed_handler(text)
        self.transport.write(reply.encode("utf-8"))
        if close:
            self.transport.close()

    def _reset(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _touch(self) -> None:
        self._last_activity = asyncio.get_running_loop().time()
        if self._timer is None:
            self._arm_timer()

    def _arm_timer(self) -> None:
        limits = self.ctx.limits
        # A half-received frame gets the short timeout: it pins buffer memory.
        timeout = limits.frame_timeout if self.decoder.buffered else limits.idle_timeout
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(self._last_activity + timeout, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        limits = self.ctx.limits
        timeout = limits.frame_timeout if self.decoder.buffered else limits.idle_timeout
        if asyncio.get_running_loop().time() - self._last_activity >= timeout:
            self.ctx.endpoint.count("closed_idle")
            self._reset()
        elif self.transport is not None and not self.transport.is_closing():
            self._arm_timer()


async def start_tcp_server(
    ctx: ServerContext, seed_handler: SeedHandler | None = None
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: _ServerConnection(ctx, seed_handler), ctx.host, ctx.port, reuse_address=True
    )


class _ClientConnection(asyncio.Protocol):
    def __init__(self, channel: TcpChannel) -> None:
        self.channel = channel
        self.decoder = LengthPrefixDecoder()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.decoder.feed(data)
            while (message := self.decoder.next_message()) is not None:
                through_link(self.channel.links.reply, message, self.channel.inbox.put, self.lose)
        except FramingError:
            self.lose()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lose()

    def lose(self) -> None:
        """The connection broke: tell the reader once, if still current."""
        if self.channel.connection is self:
            self.channel.connection = None
            self.channel.inbox.put_lost()
        if self.transport is not None:
            self.transport.abort()


class TcpChannel:
    """Client channel: one connection, re-opened on the next send after a break."""

    def __init__(self, host: str, port: int, links: Links | None = None) -> None:
        self.host = host
        self.port = port
        self.links = links or Links()
        self.inbox = Inbox()
        self.connection: _ClientConnection | None = None
        self.connects = 0

    async def send(self, data: bytes) -> None:
        connection = self.connection or await self._connect()
        transport = connection.transport
        assert transport is not None

        def write(message: bytes) -> None:
            if not transport.is_closing():
                transport.write(frame(message))

        def reset() -> None:
            # The request is lost: the connection breaks before it is sent.
            self.connection = None
            transport.abort()

        if not through_link(self.links.request, data, write, reset):
            raise ConnectionLost("connection reset: request lost")

    async def receive(self, timeout: float) -> bytes | None:
        return await self.inbox.get(timeout)

    async def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None and connection.transport is not None:
            connection.transport.close()

    async def _connect(self) -> _ClientConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(5.0):
                _, connection = await loop.create_connection(
                    lambda: _ClientConnection(self), self.host, self.port
                )
        except (OSError, TimeoutError) as err:
            raise ConnectionLost(f"cannot connect to {self.host}:{self.port}: {err}") from err
        self.connects += 1
        self.connection = connection  # asyncio already sets TCP_NODELAY
        return connection
