"""The driver-agnostic RPC client and the transport registry.

``RpcClient`` runs ``Call`` state machines over any ``ClientChannel``, one
call at a time. ``open_channel`` and ``start_server`` are the only places that
know which transports exist: services and experiments name a transport and
never import a driver.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transports.aio.driver import (
    ClientChannel,
    ConnectionLost,
    NotSent,
    ServerContext,
    WrongProtocol,
)
from transports.aio.tcp import SeedHandler, TcpChannel, start_tcp_server
from transports.aio.udp import UdpChannel, start_udp_server
from transports.call import Call, CallResult, RetrySettings
from transports.faults import LinkFaults
from transports.links import Links
from transports.retry import OnTimeout, RetryPolicy
from transports.wire import Request

TRANSPORTS = ("tcp", "udp")


def check_transport(name: str) -> str:
    if name not in TRANSPORTS:
        raise ValueError(f"unknown transport {name!r}; choose one of: {', '.join(TRANSPORTS)}")
    return name


def open_channel(
    transport: str,
    host: str,
    port: int,
    *,
    faults: LinkFaults | None = None,
    seed: int = 0,
    name: str = "client",
    origin: float | None = None,
) -> ClientChannel:
    """A client channel; ``faults`` applies client-side links named ``name``.

    ``origin``: the loop time from which a partition's times count (None: from
    the channel's first message).
    """
    stream = check_transport(transport) == "tcp"
    links = Links.build(faults, seed, name, stream=stream, origin=origin)
    if stream:
        return TcpChannel(host, port, links)
    return UdpChannel(host, port, links)


def default_settings(transport: str) -> RetrySettings:
    """Interactive defaults: TCP waits long once, UDP retries a few times."""
    if transport == "tcp":
        return RetrySettings(RetryPolicy.from_name("fixed", timeout=5.0), max_attempts=1)
    return RetrySettings(RetryPolicy.from_name("expo-full", timeout=1.0), max_attempts=4)


class RpcClient:
    """Sequential client: each ``call`` is one logical operation, retried per settings.

    ``call`` raises ``WrongProtocol`` when the server answers in another protocol.
    """

    def __init__(
        self,
        channel: ClientChannel,
        settings: RetrySettings,
        *,
        rng: random.Random | None = None,
        client_id: str | None = None,
    ) -> None:
        self.channel = channel
        self.settings = settings
        self.rng = rng or random.Random()
        # Request ids must be unique across clients (the server's reply cache
        # and idempotency keys are keyed by them): a random prefix per client.
        self.client_id = client_id or f"{self.rng.getrandbits(64):016x}"
        self._sequence = 0
        self.messages_sent = 0
        self.last_error: str | None = None  # the latest connection failure, for messages
        self.reconnect_on_timeout = settings.policy.on_timeout is OnTimeout.RECONNECT

    def next_request_id(self) -> str:
        self._sequence += 1
        return f"{self.client_id}-{self._sequence}"

    async def call(
        self, op: str, args: dict[str, Any], request_id: str | None = None
    ) -> CallResult:
        loop = asyncio.get_running_loop()
        call = Call(
            Request(request_id or self.next_request_id(), op, args), self.settings, self.rng
        )
        await self._send(call, call.start(loop.time()))
        while (deadline := call.next_timer()) is not None:
            try:
                message = await self.channel.receive(deadline - loop.time())
            except WrongProtocol:
                raise  # the server speaks another protocol: retrying cannot help
            except ConnectionLost as err:
                self.last_error = str(err)
                call.on_connection_lost(loop.time())
                continue
            if message is not None:
                call.on_reply(message, loop.time())
                continue
            timeouts = call.timeouts
            data = call.on_timer(loop.time())
            if call.timeouts != timeouts and self.reconnect_on_timeout:
                await self.channel.abandon()
            if data is not None:
                await self._send(call, data)
        assert call.result is not None
        return call.result

    async def close(self) -> None:
        await self.channel.close()

    async def _send(self, call: Call, data: bytes) -> None:
        self.messages_sent += 1
        try:
            await self.channel.send(data)
        except ConnectionLost as err:
            self.last_error = str(err)
            now = asyncio.get_running_loop().time()
            call.on_connection_lost(now, sent=not isinstance(err, NotSent))


@dataclass
class RunningServer:
    """A started server: its bound address and how to stop it."""

    transport: str
    host: str
    port: int
    context: ServerContext
    _close: Callable[[], None]
    closed: bool = False

    async def drain(self, timeout: float) -> None:
        """Wait, at most ``timeout`` s, until every client connection has closed and no
        request runs: what the clients sent before closing is executed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        context = self.context
        while (context.connections or context.in_flight) and loop.time() < deadline:
            await asyncio.sleep(0.001)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._close()
            await asyncio.sleep(0)  # let transports finish closing


async def start_server(
    transport: str, context: ServerContext, seed_handler: SeedHandler | None = None
) -> RunningServer:
    """Start a server on ``context.host:context.port`` (port 0 picks a free one)."""
    if check_transport(transport) == "tcp":
        server = await start_tcp_server(context, seed_handler)
        port = server.sockets[0].getsockname()[1]

        def close_tcp() -> None:
            server.close()
            for connection in list(context.connections):
                abort = getattr(getattr(connection, "transport", None), "abort", None)
                if abort is not None:
                    abort()

        return RunningServer("tcp", context.host, port, context, close_tcp)
    if seed_handler is not None:
        raise ValueError("seed framing is a TCP stream format; use --transport tcp")
    datagram = await start_udp_server(context)
    port = datagram.get_extra_info("sockname")[1]
    return RunningServer("udp", context.host, port, context, datagram.close)
