"""UDP driver: one wire message per datagram (thin glue).

Datagrams larger than ``MAX_MESSAGE_SIZE`` are dropped and counted before any
parsing, as is every datagram while ``max_in_flight`` requests are already
queued (a UDP server cannot push back: it sheds load, and clients retry).
No reply is larger than ``amplification_factor`` times the datagram it answers
(UDP never validates the sender's address, so a spoofed request must not turn
the server into an amplifier; QUIC's rule, RFC 9000 section 8). For the same
reason every request carries its peer as unvalidated: the endpoint's admission
asks an expensive request for an address token first. Server-side
fault links, when configured, are kept per peer address (bounded, oldest
forgotten first).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any, cast

from transports.admission import Peer
from transports.aio.driver import (
    Inbox,
    ServerContext,
    limit_read_size,
    through_link,
    until_delivered,
)
from transports.links import Links
from transports.wire import MAX_MESSAGE_SIZE

Address = Any  # (host, port) or (host, port, flowinfo, scope_id)


class _ServerProtocol(asyncio.DatagramProtocol):
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.transport: asyncio.DatagramTransport | None = None
        self._peer_links: OrderedDict[Address, Links] = OrderedDict()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)
        size_receive_buffer(transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        ctx = self.ctx
        if len(data) > MAX_MESSAGE_SIZE:
            ctx.endpoint.count("rejected_oversize_datagram")
            return
        if ctx.in_flight >= ctx.limits.max_in_flight:  # ctx.overloaded, without a call
            ctx.endpoint.count("dropped_overload")
            return
        budget = int(ctx.limits.amplification_factor * len(data))
        peer = Peer((addr[0], addr[1]), validated=False)

        def send(reply: bytes) -> None:
            self._send(reply, addr)

        if ctx.faults is None:
            ctx.execute(data, send, budget=budget, peer=peer)
            return
        links = self._links_for(addr)

        def respond(reply: bytes) -> None:
            through_link(links.reply, reply, send, _no_reset)

        def execute(message: bytes) -> None:
            ctx.execute(message, respond, budget=budget, peer=peer)

        through_link(links.request, data, execute, _no_reset)

    def _send(self, reply: bytes, addr: Address) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (e.g. a client that went away) must not stop the server.
        self.ctx.endpoint.count("socket_errors")

    def _links_for(self, addr: Address) -> Links:
        """The peer's fault links: built on its first datagram, the oldest forgotten first."""
        links = self._peer_links.get(addr)
        if links is None:
            links = self._peer_links[addr] = self.ctx.links_for_peer(stream=False)
            if len(self._peer_links) > self.ctx.limits.max_peers_tracked:
                self._peer_links.popitem(last=False)
        return links


def size_receive_buffer(transport: asyncio.BaseTransport) -> None:
    """Receive datagrams into a buffer of one message (plus a byte), not 256 KiB.

    One byte more than the largest message still shows that a datagram was
    too large: it arrives truncated to ``MAX_MESSAGE_SIZE + 1`` bytes and is
    refused as oversize. See ``driver.limit_read_size`` for why.
    """
    limit_read_size(transport, MAX_MESSAGE_SIZE + 1)


def _no_reset() -> None:
    """Datagram links never reset: there is no connection to break."""


async def start_udp_server(ctx: ServerContext) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    if ctx.sock is not None:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _ServerProtocol(ctx), sock=ctx.sock
        )
    else:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _ServerProtocol(ctx), local_addr=(ctx.host, ctx.port)
        )
    return transport


class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self, channel: UdpChannel) -> None:
        self.channel = channel

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        size_receive_buffer(transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        through_link(self.channel.links.reply, data, self.channel.inbox.put, _no_reset)

    def error_received(self, exc: Exception) -> None:
        # e.g. ECONNREFUSED from an ICMP port unreachable: the attempt simply
        # gets no reply and times out, as it would on a real network.
        self.channel.socket_errors += 1


class UdpChannel:
    """Client channel: a connected UDP socket to one server."""

    def __init__(self, host: str, port: int, links: Links | None = None) -> None:
        self.host = host
        self.port = port
        self.links = links or Links()
        self.inbox = Inbox()
        self.socket_errors = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def send(self, data: bytes) -> None:
        transport = self._transport or await self._open()
        through_link(self.links.request, data, transport.sendto, _no_reset)

    async def receive(self, timeout: float) -> bytes | None:
        return await self.inbox.get(timeout)

    async def abandon(self) -> None:
        """A datagram flow has no connection to give up."""

    async def close(self) -> None:
        await until_delivered(self.links.request)  # datagrams in flight still arrive
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def _open(self) -> asyncio.DatagramTransport:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _ClientProtocol(self), remote_addr=(self.host, self.port)
        )
        self._transport = transport
        return transport
