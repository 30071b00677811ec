"""The fault proxy's TCP relay: one client connection and its upstream, faulted both ways.

Each direction reads, lets its ``FaultLink`` (stream mode) decide, queues and
writes; a loss is held back as TCP's recovery would (``tcp=retransmit``), a
``reset`` (or a loss under ``tcp=reset``) aborts both sides with a real RST, ``--stall`` pauses
a direction and ``--slice`` cuts writes into random pieces.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from transports.faults import FaultLink
from transports.framing import FramingError, LengthPrefixDecoder, frame
from transports.proxy.config import READ_SIZE, REPLY, REQUEST

if TYPE_CHECKING:  # the proxy owns its connections: import for typing only
    from transports.proxy.server import FaultProxy

QUEUE_ITEMS = 64  # messages held per TCP direction before reading pauses (backpressure)
CONNECT_TIMEOUT = 5.0


@dataclass
class _Item:
    at: float
    data: bytes
    stall: bool


class TcpConnection:
    """One proxied TCP connection: two directions, each read -> decide -> queue -> write."""

    def __init__(self, proxy: FaultProxy, index: int) -> None:
        self.proxy = proxy
        self.config = proxy.config
        self.index = index
        self.loop = asyncio.get_running_loop()
        self.last_activity = self.loop.time()
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.broken = False

    async def run(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.writers.append(client_w)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                up_r, up_w = await asyncio.open_connection(*self.config.upstream)
        except (OSError, TimeoutError):
            self.proxy.stats.totals["upstream_failed"] += 1
            self.reset()
            return
        self.writers.append(up_w)
        for direction, reader, writer in ((REQUEST, client_r, up_w), (REPLY, up_r, client_w)):
            label = f"conn{self.index}/{direction}"
            link = FaultLink(
                self.config.faults.link,
                self.config.seed,
                label,
                stream=True,
                origin=self.proxy.started,
            )
            queue: asyncio.Queue[_Item | None] = asyncio.Queue(QUEUE_ITEMS)
            rng = random.Random(f"{self.config.seed}/{label}/stall")  # own streams: the
            slicer = random.Random(f"{self.config.seed}/{label}/slice")  # link's stay CRN
            self.tasks.append(asyncio.create_task(self._read(direction, reader, link, queue, rng)))
            self.tasks.append(asyncio.create_task(self._write(direction, writer, queue, slicer)))
        self.tasks.append(asyncio.create_task(self._watch_idle()))
        try:
            await asyncio.gather(*self.tasks[:4], return_exceptions=True)
        finally:
            for task in self.tasks:
                task.cancel()
            for writer in self.writers:
                writer.close()

    async def _read(
        self,
        direction: str,
        reader: asyncio.StreamReader,
        link: FaultLink,
        queue: asyncio.Queue[_Item | None],
        stall_rng: random.Random,
    ) -> None:
        decoder = LengthPrefixDecoder() if self.config.framing == "length" else None
        stats = self.proxy.stats
        while True:
            try:
                data = await reader.read(READ_SIZE)
            except OSError:  # the peer reset its side: pass the reset on
                stats.totals["peer_resets"] += 1
                self.reset()
                return
            if not data:
                await queue.put(None)  # EOF: half-close the other side once drained
                return
            self.last_activity = self.loop.time()
            try:
                messages = _split(decoder, data)
            except FramingError:
                stats.totals["framing_errors"] += 1
                self.reset()
                return
            for message in messages:
                verdict = link.apply(message, self.loop.time())
                stats.record(direction, verdict, len(message))
                if verdict.reset:
                    self.reset()
                    return
                stall = stall_rng.random() < self.config.stall  # one draw per message
                for delivery in verdict.deliveries:
                    out = frame(delivery.data) if decoder is not None else delivery.data
                    await queue.put(_Item(delivery.at, out, stall))

    async def _write(
        self,
        direction: str,
        writer: asyncio.StreamWriter,
        queue: asyncio.Queue[_Item | None],
        slicer: random.Random,
    ) -> None:
        counter = self.proxy.stats.directions[direction]
        try:
            while (item := await queue.get()) is not None:
                if item.stall:
                    counter["stalled"] += 1
                    await asyncio.sleep(self.config.stall_time)
                await asyncio.sleep(max(0.0, item.at - self.loop.time()))  # FIFO: in order
                for piece in self._pieces(direction, item.data, slicer):
                    writer.write(piece)
                    counter["writes"] += 1
                    await writer.drain()
                    if self.config.slices(direction) and self.config.slice_delay:
                        await asyncio.sleep(self.config.slice_delay)
                self.last_activity = self.loop.time()
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            self.reset()

    def _pieces(self, direction: str, data: bytes, slicer: random.Random) -> list[bytes]:
        if not self.config.slices(direction):
            return [data]
        pieces, start = [], 0
        while start < len(data):
            end = start + slicer.randint(1, self.config.slice_size)
            pieces.append(data[start:end])
            start = end
        return pieces

    async def _watch_idle(self) -> None:
        while True:
            idle = self.loop.time() - self.last_activity
            if idle >= self.config.idle_timeout:
                self.proxy.stats.totals["expired"] += 1
                self.reset()
                return
            await asyncio.sleep(self.config.idle_timeout - idle)

    def reset(self) -> None:
        """Break both sides with a real RST (SO_LINGER 0), as a failing network would."""
        if self.broken:
            return
        self.broken = True
        for writer in self.writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()


def _split(decoder: LengthPrefixDecoder | None, data: bytes) -> list[bytes]:
    if decoder is None:
        return [data]
    decoder.feed(data)
    messages = []
    while (message := decoder.next_message()) is not None:
        messages.append(message)
    return messages
