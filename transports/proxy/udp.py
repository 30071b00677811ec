"""The fault proxy's UDP relay: one session per client address, faulted datagrams both ways.

Each session has its own upstream socket and a ``FaultLink`` per direction in
datagram mode (drop, dup, reorder, delay, corrupt); ``UdpListener`` receives
the clients' datagrams on the listening socket and hands them to their session.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from transports.faults import FaultLink
from transports.proxy.config import READ_SIZE, REPLY, REQUEST

if TYPE_CHECKING:  # the proxy owns its sessions: import for typing only
    from transports.proxy.server import FaultProxy


class UdpSession:
    """One client address: its own upstream socket and a link per direction."""

    def __init__(self, proxy: FaultProxy, client: Any, index: int) -> None:
        config = proxy.config
        self.proxy = proxy
        self.client = client
        self.loop = asyncio.get_running_loop()
        self.last_activity = self.loop.time()
        family = socket.AF_INET6 if ":" in config.upstream[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect(config.upstream)  # UDP connect: no packet, just a default peer
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self.links = {
            d: FaultLink(
                config.faults.link,
                config.seed,
                f"session{index}/{d}",
                stream=False,
                origin=proxy.started,
            )
            for d in (REQUEST, REPLY)
        }
        self.closed = False

    def from_client(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        self._pass(REQUEST, data, self._send_up)

    def _readable(self) -> None:
        for _ in range(64):  # bounded per wake-up: other sessions get their turn
            try:
                data = self.sock.recv(READ_SIZE)
            except BlockingIOError:
                return
            except OSError:  # ICMP unreachable from upstream: like a lost datagram
                self.proxy.stats.totals["upstream_errors"] += 1
                return
            self.last_activity = self.loop.time()
            self._pass(REPLY, data, self._send_down)

    def _pass(self, direction: str, data: bytes, send: Callable[[bytes], None]) -> None:
        now = self.loop.time()
        verdict = self.links[direction].apply(data, now)
        self.proxy.stats.record(direction, verdict, len(data))
        for delivery in verdict.deliveries:
            if delivery.at <= now:
                send(delivery.data)
            else:
                self.loop.call_at(delivery.at, send, delivery.data)

    def _send_up(self, data: bytes) -> None:
        if not self.closed:
            with contextlib.suppress(OSError):  # a full buffer drops, as a network would
                self.sock.send(data)

    def _send_down(self, data: bytes) -> None:
        transport = self.proxy.udp_transport
        if not self.closed and transport is not None and not transport.is_closing():
            transport.sendto(data, self.client)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


class UdpListener(asyncio.DatagramProtocol):
    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.proxy.udp_session(addr).from_client(data)

    def error_received(self, exc: Exception) -> None:
        self.proxy.stats.totals["client_errors"] += 1
