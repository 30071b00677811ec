"""TCP driver: length-prefixed frames over asyncio streams (thin glue).

The server reads frames, hands each to the endpoint and writes the reply
frame. ``framing="seed"`` speaks the lab's protocol instead (64-byte ASCII
length header in, plain text out) through a text handler, so the lab's own
clients work unmodified. Limits (``ServerLimits``, docs/SECURITY.md):
``max_connections`` and ``max_connections_per_source`` (extra connections are
closed at once and counted; when full, connections whose peer already closed
are uncounted first), a frame unfinished ``frame_timeout`` s after its first byte closes the
connection, as does ``idle_timeout`` s without a valid request (garbage does not keep a
connection alive: only a reply written resets the idle timer); at most
``max_in_flight_per_connection`` requests per connection (and
``max_in_flight`` per server) execute at once, beyond that the connection
stops being read (pause_reading), as it does while the peer leaves its
replies unread (pause_writing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from transports.admission import Peer
from transports.aio.driver import (
    STREAM_READ_SIZE,
    ConnectionLost,
    Inbox,
    NotSent,
    ServerContext,
    WrongProtocol,
    limit_read_size,
    through_link,
    until_delivered,
)
from transports.aio.slots import closed_peers
from transports.framing import (
    FramingError,
    LengthPrefixDecoder,
    SeedDecoder,
    WrongFraming,
    frame,
)
from transports.links import Links

#: Seed protocol handler: request text -> (reply text, close the connection?).
SeedHandler = Callable[[str], tuple[str, bool]]

#: What a server writes before closing to a client whose stream is in the
#: other framing, keyed by that framing: plain text the client shows (the
#: lab's client prints whatever it receives; ours quotes a reply that is not
#: a frame). PROTOCOL.md section 8.
WRONG_FRAMING_HINTS = {
    "length": "[Error] this server speaks the lab's seed protocol (started with "
    "--framing seed), not the testbed protocol: use the lab's client, or start the "
    "server without --framing seed",
    "seed": "[Error] this server speaks the testbed protocol (length-prefixed frames), "
    "not the lab's: start it with --framing seed for the lab's client",
}


class _ServerConnection(asyncio.Protocol):
    def __init__(self, ctx: ServerContext, seed_handler: SeedHandler | None) -> None:
        self.ctx = ctx
        self.seed_handler = seed_handler
        self.decoder: LengthPrefixDecoder | SeedDecoder = (
            SeedDecoder() if seed_handler else LengthPrefixDecoder()
        )
        self.transport: asyncio.Transport | None = None
        self.links = Links()
        self.peer: Peer | None = None
        self.host = ""
        self.in_flight = 0
        self._last_activity = 0.0
        self._partial_since: float | None = None  # when the unfinished frame began
        self._reading_paused = False
        self._writing_paused = False
        self._pumping = False
        self._timer: asyncio.TimerHandle | None = None
        self._time = asyncio.get_running_loop().time
        self._on_request: Callable[[bytes], None] = self._execute
        self._on_reply: Callable[[bytes], None] = self._write

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not subclass
        # asyncio.Transport (they implement the same methods).
        self.transport = transport = cast(asyncio.Transport, transport)
        limit_read_size(transport, STREAM_READ_SIZE)
        address = transport.get_extra_info("peername")
        if isinstance(address, tuple) and len(address) >= 2:  # AF_INET, AF_INET6
            self.host = str(address[0])
            self.peer = Peer((self.host, int(address[1])), validated=True)  # by the handshake
        if not self.ctx.admit(self, self.host, self._reap_closed):
            transport.abort()
            return
        self.links = links = self.ctx.links_for_peer(stream=True)
        # A path without a fault link calls its next step directly; one with a
        # link (even a zero-probability one, which counts) goes through it.
        if links.request is not None:
            self._on_request = self._through_request_link
        if links.reply is not None:
            self._on_reply = self._through_reply_link
        self._last_activity = self._time()
        self._arm_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.release(self, self.host)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _reap_closed(self) -> int:
        """Release the connections whose peer has closed (see ``transports.aio.slots``).

        Only those being read: the loop reads their end-of-file within an
        iteration or two and closes them. A paused one might keep it unread.
        """
        ctx = self.ctx
        candidates = [
            (_fileno(c), c)
            for c in ctx.connections
            if isinstance(c, _ServerConnection) and not c._reading_paused
        ]
        reaped = closed_peers(candidates)
        for connection in reaped:
            ctx.release(connection, connection.host)
        if reaped:
            ctx.endpoint.count("reaped_closed_connections", len(reaped))
        return len(reaped)

    def data_received(self, data: bytes) -> None:
        try:
            self.decoder.feed(data)
        except FramingError as err:
            self._framing_error(err)
            return
        self._pump()

    def pause_writing(self) -> None:
        # The peer does not read its replies: stop reading its requests.
        self._writing_paused = True
        self._pump()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._pump()

    def _must_wait(self) -> bool:
        """Whether to leave complete frames in the decoder for now (backpressure)."""
        transport, ctx = self.transport, self.ctx
        if transport is None or transport.is_closing():
            return True
        if ctx.in_flight >= ctx.limits.max_in_flight:  # ctx.overloaded, without a call
            ctx.park(self, self._pump)
            return True
        cap = ctx.limits.max_in_flight_per_connection
        return self._writing_paused or (self.seed_handler is None and self.in_flight >= cap)

    def _pump(self) -> None:
        """Start the complete frames in the decoder, as far as the limits allow.

        Memory per connection stays bounded: at most ``max_in_flight_per_connection``
        requests executing, plus what one read put in the decoder; while at the
        cap, the socket is not read and TCP flow control slows the peer down.
        """
        if self._pumping:
            return  # re-entered (a reply written inline): the loop below re-checks
        self._pumping = True
        progressed = False
        decoder, on_request = self.decoder, self._on_request
        try:
            waiting = self._must_wait()
            while not waiting and decoder.ready:
                message = decoder.next_message()
                assert message is not None
                progressed = True
                if isinstance(message, str):
                    self._on_seed_text(message)
                else:
                    on_request(message)
                waiting = self._must_wait()
        except FramingError as err:
            self._framing_error(err)
            return
        finally:
            self._pumping = False
        self._set_reading(waiting)
        # The frame timeout runs from the first byte of an unfinished frame, so
        # dribbling one byte at a time (slowloris) does not keep it alive.
        if not decoder.buffered:
            self._partial_since = None  # the deadline only moves later: the timer re-checks
            return
        if progressed or self._partial_since is None:
            self._partial_since = self._time()
        if self._timer is not None and self._timer.when() > self._deadline():
            self._timer.cancel()
            self._arm_timer()

    def _set_reading(self, paused: bool) -> None:
        """Pause or resume reading the socket, if that changes anything."""
        transport = self.transport
        if paused != self._reading_paused and transport is not None and not transport.is_closing():
            self._reading_paused = paused
            (transport.pause_reading if paused else transport.resume_reading)()

    def _execute(self, message: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self.in_flight += 1
            self.ctx.execute(message, self._on_reply, on_done=self._request_done, peer=self.peer)

    def _request_done(self) -> None:
        self.in_flight -= 1
        if self._reading_paused:
            self._pump()

    def _through_request_link(self, message: bytes) -> None:
        through_link(self.links.request, message, self._execute, self._reset)

    def _through_reply_link(self, reply: bytes) -> None:
        through_link(self.links.reply, reply, self._write, self._reset)

    def _write(self, reply: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._last_activity = self._time()  # a valid request: the peer is not idle
            transport.write(frame(reply))

    def _on_seed_text(self, text: str) -> None:
        assert self.seed_handler is not None and self.transport is not None
        self._last_activity = self._time()
        reply, close = self.seed_handler(text)
        self.transport.write(reply.encode("utf-8"))
        if close:
            self.transport.close()

    def _framing_error(self, err: FramingError) -> None:
        self.ctx.endpoint.count("rejected_framing")
        self.ctx.log_bad_input(f"closing connection: {err}")
        if isinstance(err, WrongFraming) and self.transport is not None:
            # A client of the other protocol: say so, then close gracefully (an
            # abort could discard the line before the client reads it).
            self.transport.write(WRONG_FRAMING_HINTS[err.found].encode("utf-8"))
            self.transport.close()
            return
        self._reset()

    def _reset(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _deadline(self) -> float:
        limits = self.ctx.limits
        if self._partial_since is not None and not self._reading_paused:
            return self._partial_since + limits.frame_timeout
        return self._last_activity + limits.idle_timeout

    def _arm_timer(self) -> None:
        # One timer per connection, moved lazily: it fires at the deadline
        # computed when armed, then re-checks (activity may have moved it).
        self._timer = asyncio.get_running_loop().call_at(self._deadline(), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.transport is None or self.transport.is_closing():
            return
        now = asyncio.get_running_loop().time()
        stalled = self._partial_since is not None and not self._reading_paused
        if now < self._deadline() or (self.in_flight and not stalled):
            if now >= self._deadline():  # we owe the peer replies: it is not idle
                self._last_activity = now
            self._arm_timer()
            return
        self.ctx.endpoint.count("closed_stalled_frame" if stalled else "closed_idle")
        self.ctx.log_bad_input("closing a stalled frame" if stalled else "closing idle")
        self._reset()


def _fileno(connection: _ServerConnection) -> int:
    transport = connection.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock.fileno() if sock is not None else -1


async def start_tcp_server(
    ctx: ServerContext, seed_handler: SeedHandler | None = None
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    # A longer accept queue than asyncio's 100: a burst of connections is
    # accepted (then admitted or refused) instead of waiting on SYN retries.
    backlog = max(100, min(ctx.limits.max_connections, 4096))

    def factory() -> _ServerConnection:
        return _ServerConnection(ctx, seed_handler)

    if ctx.sock is not None:
        return await loop.create_server(factory, sock=ctx.sock, backlog=backlog)
    return await loop.create_server(
        factory, ctx.host, ctx.port, reuse_address=True, backlog=backlog
    )


class _ClientConnection(asyncio.Protocol):
    def __init__(self, channel: TcpChannel) -> None:
        self.channel = channel
        self.decoder = LengthPrefixDecoder()
        self.transport: asyncio.Transport | None = None
        self.replied = False  # a valid frame arrived: the peer speaks our framing
        #: Frames written before the modelled handshake completes, in order.
        self.unsent: list[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop: see above
        limit_read_size(transport, STREAM_READ_SIZE)

    def data_received(self, data: bytes) -> None:
        try:
            self.decoder.feed(data)
            while (message := self.decoder.next_message()) is not None:
                self.replied = True
                through_link(self.channel.links.reply, message, self._deliver, self.lose)
        except FramingError:
            # The first bytes of a connection not in our framing: the peer
            # speaks another protocol. Later: a broken stream, as any loss.
            self.lose(None if self.replied else WrongProtocol(data))

    def _deliver(self, message: bytes) -> None:
        # A reply the fault link held back dies with an abandoned connection.
        if self.channel.connection is self:
            self.channel.inbox.put(message)

    def write(self, message: bytes) -> None:
        """Write one message: at once, or when the modelled handshake completes."""
        transport = self.transport
        if self.unsent is not None:
            self.unsent.append(message)
        elif transport is not None and not transport.is_closing():
            transport.write(frame(message))

    def hold_until(self, ready_at: float | None) -> None:
        """Keep writes back until ``ready_at`` (the modelled handshake's end; None: never)."""
        self.unsent = []
        if ready_at is not None:
            asyncio.get_running_loop().call_at(ready_at, self._release)

    def _release(self) -> None:
        unsent, self.unsent = self.unsent or [], None
        for message in unsent:
            self.write(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lose()

    def lose(self, error: ConnectionLost | None = None) -> None:
        """The connection broke (``error``: how): tell the reader once, if still current."""
        if self.channel.connection is self:
            self.channel.connection = None
            self.channel.inbox.put_lost(error)
        if self.transport is not None:
            self.transport.abort()


class TcpChannel:
    """Client channel: one connection, re-opened on the next send after a break.

    With fault links, a new connection's handshake follows the request link's
    model (``FaultLink.connect``): messages wait until it completes, and one
    whose SYNs all get lost breaks when TCP would give up.
    """

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

        def reset() -> None:
            # The request is lost: the connection breaks before it is sent.
            self.connection = None
            transport.abort()

        if not through_link(self.links.request, data, connection.write, reset):
            raise ConnectionLost("connection reset: request lost")

    async def receive(self, timeout: float) -> bytes | None:
        return await self.inbox.get(timeout)

    async def abandon(self) -> None:
        """Abort the connection (RST): what it has not delivered is lost with it."""
        connection, self.connection = self.connection, None
        self.inbox.clear()
        if connection is not None and connection.transport is not None:
            connection.transport.abort()

    async def close(self) -> None:
        """Close gracefully, after the writes the fault link still holds back (as TCP would)."""
        await until_delivered(self.links.request)
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
            raise NotSent(f"cannot connect to {self.host}:{self.port}: {err}") from err
        self.connects += 1
        self.connection = connection  # asyncio already sets TCP_NODELAY
        link = self.links.request
        if link is not None:
            handshake = link.connect(loop.time(), self.links.reply)
            if handshake.established_at is None:  # every SYN lost: connect() fails
                assert handshake.failed_at is not None
                connection.hold_until(None)
                loop.call_at(handshake.failed_at, connection.lose)
            elif handshake.established_at > loop.time():
                connection.hold_until(handshake.established_at)
        return connection
