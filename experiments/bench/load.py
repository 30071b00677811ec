"""The load client: N closed-loop clients in this process, measured over a window.

Each client is a closed loop with one request outstanding: its next request
is sent from the callback that receives the reply (asyncio Protocol
callbacks, no task per client). A TCP client holds one connection; a UDP
client one connected socket, and after ``timeout`` without a reply it counts
the request lost and sends the next. Every loop is bounded in time (warm-up +
measured window + drain) and in count (``max_requests``). ``drive_paired``
compares two peers with one such client in short windows, alternated ABBA so
that the pairs see the same load.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from experiments.bench.peers import HOST
from experiments.bench.workloads import Workload
from transports.aio.driver import STREAM_READ_SIZE, limit_read_size
from transports.aio.udp import size_receive_buffer


@dataclass(frozen=True)
class Sample:
    """One measured window: completions, their latencies (s), losses, bad replies."""

    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    lost: int = 0
    bad: int = 0
    sent: int = 0
    server_cpu: float = 0.0  # CPU seconds the server used over the whole drive (if measured)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds > 0 else 0.0


class _Run:
    def __init__(self, workload: Workload, clients: int, max_requests: int) -> None:
        self.workload = workload
        self.clients = clients
        self.max_requests = max_requests
        self.measuring = False
        self.running = True
        self.latencies: list[float] = []
        self.lost = self.bad = self.sent = 0
        self.idle = 0
        self.all_idle: asyncio.Future[None] | None = None


class _Client(asyncio.Protocol, asyncio.DatagramProtocol):
    """One closed-loop client: at most one request outstanding."""

    def __init__(self, run: _Run, index: int) -> None:
        self.run = run
        self.index = index
        self.seq = 0
        self.sent_at = 0.0
        self.token = b""
        self.buf = b""
        self.checked = False
        self.transport: Any = None
        self.stream = run.workload.framing != "datagram"
        self.fixed = run.workload.reply_size

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        # The same client cost for every server (see driver.limit_read_size).
        if self.stream:
            limit_read_size(transport, STREAM_READ_SIZE)
        else:
            size_receive_buffer(transport)

    def send_next(self) -> None:
        run = self.run
        if not run.running or run.sent >= run.max_requests:
            self.sent_at = 0.0
            run.idle += 1
            if run.all_idle is not None and run.idle >= run.clients and not run.all_idle.done():
                run.all_idle.set_result(None)
            return
        data, self.token = run.workload.message(self.index, self.seq)
        self.seq += 1
        run.sent += 1
        self.sent_at = time.perf_counter()
        if self.stream:
            self.transport.write(data)
        else:
            self.transport.sendto(data)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        need = self.fixed or (4 + int.from_bytes(buf[:4], "big") if len(buf) >= 4 else 5)
        if len(buf) < need:
            self.buf = buf
            return
        self.buf = b""
        self._completed(buf[4:] if not self.fixed else buf, len(buf) != need)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.sent_at and self.token in data:
            self._completed(data, False)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error: the request times out and counts as lost

    def _completed(self, reply: bytes, extra: bool) -> None:
        run = self.run
        if run.measuring:
            run.latencies.append(time.perf_counter() - self.sent_at)
        if extra or not self.checked:
            self.checked = True
            if extra or not run.workload.check(reply):
                run.bad += 1
        self.send_next()

    def expire(self, now: float, timeout: float) -> None:
        if self.sent_at and now - self.sent_at > timeout:
            self.run.lost += self.run.measuring
            self.send_next()


async def _connect(run: _Run, transport: str, port: int, clients: int) -> list[_Client]:
    loop = asyncio.get_running_loop()
    made: list[_Client] = []

    async def one(index: int) -> None:
        client = _Client(run, index)
        if transport == "tcp":
            await loop.create_connection(lambda: client, HOST, port)
        else:
            await loop.create_datagram_endpoint(lambda: client, remote_addr=(HOST, port))
        made.append(client)

    # In batches: a burst of 512 SYNs would overflow a listen backlog of 128.
    async with asyncio.timeout(30.0):
        for start in range(0, clients, 64):
            await asyncio.gather(*(one(i) for i in range(start, min(clients, start + 64))))
    return made


async def drive(
    transport: str,
    port: int,
    workload: Workload,
    clients: int,
    *,
    seconds: float,
    warmup: float = 0.1,
    timeout: float = 1.0,
    max_requests: int = 2_000_000,
) -> Sample:
    """Run ``clients`` closed-loop clients; measure the window after ``warmup``."""
    run = _Run(workload, clients, max_requests)
    run_clients = await _connect(run, transport, port, clients)
    loop = asyncio.get_running_loop()
    run.all_idle = loop.create_future()
    try:
        for client in run_clients:
            client.send_next()
        deadline = started = time.perf_counter() + warmup
        expiring = run_clients if transport == "udp" else []  # TCP loses nothing
        while (now := time.perf_counter()) < deadline + seconds:
            if not run.measuring and now >= deadline:
                run.measuring, started = True, now
            for client in expiring:
                client.expire(now, timeout)
            await asyncio.sleep(min(0.05, max(0.001, deadline + seconds - now)))
        run.measuring, run.running = False, False
        measured = time.perf_counter() - started
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout + 0.5):
                await run.all_idle
    finally:
        for client in run_clients:
            client.transport.close()
        await asyncio.sleep(0)
    sample = Sample(clients, measured, run.latencies, run.lost, run.bad, run.sent)
    return sample


def abba_order(pairs: int) -> list[tuple[int, int]]:
    """The two peers' order in each pair: (0, 1), (1, 0), (0, 1), ...

    Flattened, 0 1 1 0 0 1 1 0: each peer runs first in half of the pairs, so
    a drift that is linear in time favours neither side over two pairs.
    """
    return [(0, 1) if i % 2 == 0 else (1, 0) for i in range(max(0, pairs))]


async def drive_paired(
    transport: str,
    reference: tuple[int, Workload],
    candidate: tuple[int, Workload],
    *,
    pairs: int,
    seconds: float,
    warmup: float = 0.05,
    timeout: float = 1.0,
) -> list[tuple[Sample, Sample]]:
    """One closed-loop client on two peers (port, workload), in short ABBA-ordered windows.

    The windows of a pair are adjacent in time, so the pair's ratio sees the
    same machine load on both sides, which rounds that visit every server do
    not. Each window is a fresh ``drive`` (its own connection or socket, set up
    outside the measured window) that warms up for ``warmup`` first. Bounded:
    ``2 * pairs`` windows, each bounded in time by ``drive``.
    Returns (reference sample, candidate sample) per pair.
    """
    peers = (reference, candidate)
    out = []
    for order in abba_order(pairs):
        got: dict[int, Sample] = {}
        for i in order:
            port, load = peers[i]
            got[i] = await drive(
                transport, port, load, 1, seconds=seconds, warmup=warmup, timeout=timeout
            )
        out.append((got[0], got[1]))
    return out
