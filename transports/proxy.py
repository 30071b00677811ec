"""``python -m transports.proxy``: a seeded fault proxy between unmodified programs.

Role: put the fault plan of ``transports.faults`` between a client and a server
that know nothing of it (the lab's own clients, anything else that speaks TCP
or UDP). It listens on ``--listen``, opens one upstream connection (TCP) or one
upstream socket (UDP) per client, and passes traffic both ways through a
``FaultLink`` per direction, so every decision is seeded and reproducible.
Documentation: docs/FAULT_PROXY.md.

* TCP: a "message" is whatever one ``read()`` returned (TCP has no message
  boundaries), or with ``--framing length`` one frame of our length-prefixed
  protocol. Links run in stream mode: loss or ``reset`` resets *both* sides
  (RST: SO_LINGER 0), delay/jitter keep FIFO order, dup and reorder are absorbed.
  Proxy-only options: ``--stall P`` (the direction stops for ``--stall-time``
  before this message), ``--slice N`` (write in random pieces of 1..N bytes,
  ``--slice-delay`` apart). Labels ``conn{i}/request|reply``, i in arrival order.
* UDP: a message is a datagram; links run in datagram mode (drop, dup, reorder,
  delay, corrupt). One session per client address with its own upstream socket;
  labels ``session{i}/request|reply``. Sessions expire after ``--idle-timeout``.

On SIGINT or SIGTERM it prints a counter summary per direction and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import random
import signal
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from transports.faults import FaultLink, FaultSpec, FaultSpecError, Verdict
from transports.framing import FramingError, LengthPrefixDecoder, frame

__all__ = ["FaultProxy", "ProxyConfig", "ProxyStats", "main", "parse_address"]

REQUEST, REPLY = "request", "reply"
DIRECTION_NAMES = {REQUEST: "client->server", REPLY: "server->client"}
# Summary columns. In stream mode dup and reorder are absorbed (always 0); UDP
# has no connection to reset, stall or slice.
COLUMNS = {
    "tcp": ("messages", "forwarded", "dropped", "delayed", "corrupted", "reset", "stalled",
            "writes", "bytes"),
    "udp": ("messages", "forwarded", "dropped", "duplicated", "reordered", "delayed",
            "corrupted", "bytes"),
}  # fmt: skip
# FaultLink event -> summary column. Stream mode's absorbed_* and fifo_hold are
# not faults the peer sees, so they are not columns.
_EVENT_COLUMN = {
    "drop": "dropped", "dup": "duplicated", "reorder": "reordered", "delay": "delayed",
    "corrupt": "corrupted", "reset": "reset",
}  # fmt: skip
READ_SIZE = 65536
QUEUE_ITEMS = 64  # messages held per TCP direction before reading pauses (backpressure)
CONNECT_TIMEOUT = 5.0
Address = tuple[str, int]


def parse_address(text: str) -> Address:
    """``HOST:PORT`` or ``[V6HOST]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:5050 or [::1]:5050), got {text!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ProxyConfig:
    transport: str
    listen: Address
    upstream: Address
    faults: FaultSpec
    seed: int = 0
    stall: float = 0.0  # TCP: probability per message that the direction stalls first
    stall_time: float = 1.0
    slice_size: int = 0  # TCP: 0 = off, else writes of 1..slice_size bytes
    slice_delay: float = 0.0
    slice_dir: str = "both"  # which direction slicing applies to
    framing: str = "chunk"  # TCP: "chunk" (one read = one message) or "length"
    max_connections: int = 256  # TCP connections, or UDP sessions
    idle_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be tcp or udp, got {self.transport!r}")
        if not 0.0 <= self.stall <= 1.0:
            raise ValueError(f"--stall must be a probability in [0, 1], got {self.stall}")
        if self.slice_size < 0 or self.max_connections < 1:
            raise ValueError("--slice must be >= 0 and --max-connections >= 1")
        if min(self.stall_time, self.slice_delay) < 0 or self.idle_timeout <= 0:
            raise ValueError("durations must be >= 0 and --idle-timeout > 0")

    def slices(self, direction: str) -> bool:
        return self.slice_size > 0 and self.slice_dir in ("both", direction)


class ProxyStats:
    """Counters per direction (``COLUMNS``) and per proxy (connections, refused, ...)."""

    def __init__(self) -> None:
        self.directions = {d: collections.Counter[str]() for d in (REQUEST, REPLY)}
        self.totals = collections.Counter[str]()

    def record(self, direction: str, verdict: Verdict, size: int) -> None:
        counter = self.directions[direction]
        counter["messages"] += 1
        counter["bytes"] += size
        counter["forwarded"] += len(verdict.deliveries)  # a duplicate counts twice
        counter.update(_EVENT_COLUMN[e] for e in verdict.events if e in _EVENT_COLUMN)

    def table(self, transport: str) -> str:
        columns = COLUMNS[transport]
        rows = [
            [DIRECTION_NAMES[d], *(self.directions[d][c] for c in columns)]
            for d in (REQUEST, REPLY)
        ]
        return tabulate(rows, ["direction", *columns], disable_numparse=True)

    def summary(self, config: ProxyConfig) -> str:
        unit = "connections" if config.transport == "tcp" else "sessions"
        extra = ", ".join(f"{k} {v}" for k, v in sorted(self.totals.items()) if k != unit)
        return (
            f"[PROXY STOPPED] {describe(config)}: {unit} {self.totals[unit]}"
            + (f", {extra}" if extra else "")
            + "\n"
            + self.table(config.transport)
        )


def describe(config: ProxyConfig) -> str:
    extras = []
    if config.stall:
        extras.append(f"stall {config.stall} for {config.stall_time}s")
    if config.slice_size:
        extras.append(f"slice 1..{config.slice_size} B ({config.slice_dir})")
    if config.transport == "tcp" and config.framing != "chunk":
        extras.append(f"framing {config.framing}")
    return (
        f"{config.transport} {format_address(config.listen)} -> "
        f"{format_address(config.upstream)}, faults {config.faults}, seed {config.seed}"
        + "".join(f", {e}" for e in extras)
    )


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- TCP ----------------------------------------------------------------------


@dataclass
class _Item:
    at: float
    data: bytes
    stall: bool


class _TcpConnection:
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
            link = FaultLink(self.config.faults, self.config.seed, label, stream=True)
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


# --- UDP ----------------------------------------------------------------------


class _UdpSession:
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
            d: FaultLink(config.faults, config.seed, f"session{index}/{d}", stream=False)
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


class _UdpListener(asyncio.DatagramProtocol):
    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.proxy.udp_session(addr).from_client(data)

    def error_received(self, exc: Exception) -> None:
        self.proxy.stats.totals["client_errors"] += 1


# --- the proxy ----------------------------------------------------------------


class FaultProxy:
    """The proxy as a library object: ``await start()``, ``port``, ``await close()``."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.stats = ProxyStats()
        self.port = 0
        self.udp_transport: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_TcpConnection] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._sessions: collections.OrderedDict[Any, _UdpSession] = collections.OrderedDict()
        self._count = 0
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.config.listen
        if self.config.transport == "tcp":
            self._server = await asyncio.start_server(self._accept, host, port)
            self.port = self._server.sockets[0].getsockname()[1]
        else:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpListener(self), local_addr=(host, port)
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
        connection = _TcpConnection(self, self._count)
        self._connections.add(connection)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        try:
            await connection.run(reader, writer)
        finally:
            self._connections.discard(connection)
            self._handlers.discard(handler)

    def udp_session(self, addr: Any) -> _UdpSession:
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
        session = self._sessions[addr] = _UdpSession(self, addr, self._count)
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


# --- command line ---------------------------------------------------------------


# fmt: off
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m transports.proxy",
        description="Seeded fault proxy between an unmodified client and server "
        "(see docs/FAULT_PROXY.md). Prints a counter summary on SIGINT/SIGTERM.",
    )
    p.add_argument("--transport", choices=("tcp", "udp"), required=True)
    p.add_argument("--listen", type=parse_address, required=True, metavar="HOST:PORT",
                   help="where clients connect (port 0: a free port, printed on start)")
    p.add_argument("--upstream", type=parse_address, required=True, metavar="HOST:PORT")
    p.add_argument("--faults", default="", metavar="SPEC",
                   help="fault spec as in transports/FAULTS.md, e.g. loss=0.1,dup=0.05,delay=5ms")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stall", type=float, default=0.0, metavar="P",
                   help="TCP: probability per message that its direction stalls first")
    p.add_argument("--stall-time", type=float, default=1.0, metavar="SECONDS")
    p.add_argument("--slice", type=int, default=0, dest="slice_size", metavar="N",
                   help="TCP: forward in random writes of 1..N bytes")
    p.add_argument("--slice-delay", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--slice-dir", choices=("both", REQUEST, REPLY), default="both")
    p.add_argument("--framing", choices=("chunk", "length"), default="chunk",
                   help="TCP: a message is one read (chunk) or one length-prefixed frame")
    p.add_argument("--max-connections", type=int, default=256,
                   help="TCP connections or UDP sessions at once")
    p.add_argument("--idle-timeout", type=float, default=60.0, metavar="SECONDS")
    return p
# fmt: on


async def run(config: ProxyConfig) -> str:
    """Run until SIGINT/SIGTERM; return the counter summary."""
    proxy = FaultProxy(config)
    await proxy.start()
    host = config.listen[0]
    bound = _with_port(config, proxy.port)
    print(f"[PROXY LISTENING] {describe(bound)}", flush=True)
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(f"warning: listening on {host}, reachable beyond this machine", file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.close()
    return proxy.stats.summary(bound)


def _with_port(config: ProxyConfig, port: int) -> ProxyConfig:
    return dataclasses.replace(config, listen=(config.listen[0], port))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        fields = {f.name for f in dataclasses.fields(ProxyConfig)} - {"faults"}
        config = ProxyConfig(
            faults=FaultSpec.parse(args.faults), **{k: getattr(args, k) for k in fields}
        )
        summary = asyncio.run(run(config))
    except (FaultSpecError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot listen on {args.listen[0]}:{args.listen[1]}: {err}", file=sys.stderr)
        return 2
    print(summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
