"""Round trips against a server: the peers a benchmark compares, and the load client.

Each peer runs in its own process (``python -m experiments.roundtrip --serve
PEER ...``, as a user would run a server) and prints one ``[LISTENING] ...:PORT``
line:

* ``ours``: ``python -m services serve SERVICE`` itself (``services.programs.cli.main``);
  ``--fault-layer`` installs a server-side fault link per direction and peer
  with every probability zero (the CLI leaves the layer out for a zero spec);
  ``--workers N`` runs it as N processes sharing the port (``serve --workers``).
* ``echo``: a minimal asyncio echo server, the ceiling of any asyncio server on
  this machine; ``--loop uvloop`` runs it (or ``ours``) on uvloop when installed.
* ``seed``: the lab's design (shared/seed): blocking sockets, one thread per
  connection, a 64-byte ASCII length header in and plain text out, for the
  text service. Its per-message ``print`` calls are left out.

The load client (``drive``) runs N concurrent clients in the calling process,
each a closed loop with one request outstanding: its next request is sent from
the callback that receives the reply (asyncio Protocol callbacks, no task per
client). A TCP client holds one connection; a UDP client one connected socket,
and after ``timeout`` without a reply it counts the request lost and sends the
next. Every loop is bounded in time (warm-up + measured window + drain) and in
count (``max_requests``). ``drive_paired`` compares two peers with one such
client in short windows, alternated ABBA so that the pairs see the same load.

``python -m experiments.roundtrip`` is the quick check kept from the first
benchmark: one client, text service, ours against echo, TCP and UDP. The full
benchmark is ``python -m experiments.throughput``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services import text
from transports.aio.driver import STREAM_READ_SIZE, ServerContext, limit_read_size
from transports.aio.udp import size_receive_buffer
from transports.faults import Direction, FaultLink, LinkFaults
from transports.framing import SEED_HEADER, frame, seed_frame
from transports.links import Links
from transports.wire import Request, Status, WireError, decode_reply, encode_request

LISTENING = "[LISTENING]"
HOST = "127.0.0.1"
PEERS = ("ours", "echo", "seed")
TEXT = "hello world"
_PORT_RE = re.compile(r"://[^\s]*:(\d+)")


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


# --------------------------------------------------------------------------
# Peers (each in its own process)


class _EchoTcp(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        limit_read_size(transport, STREAM_READ_SIZE)  # as our server does: a fair ceiling

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _EchoUdp(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        size_receive_buffer(transport)  # as our server does: a fair ceiling

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


async def _echo_server(transport: str) -> None:
    """The ceiling: echo every byte back, nothing else."""
    loop = asyncio.get_running_loop()
    if transport == "tcp":
        server = await loop.create_server(_EchoTcp, HOST, 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
    else:
        udp, _ = await loop.create_datagram_endpoint(_EchoUdp, local_addr=(HOST, 0))
        port = udp.get_extra_info("sockname")[1]
    print(f"{LISTENING} echo on {transport}://{HOST}:{port}", flush=True)
    await asyncio.Event().wait()


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    chunks, have = [], 0
    while have < size:
        chunk = conn.recv(size - have)
        if not chunk:
            return None
        chunks.append(chunk)
        have += len(chunk)
    return b"".join(chunks)


def _seed_connection(conn: socket.socket) -> None:
    """The lab's handleClient: header, message, reply, until !DISCONNECT."""
    with conn:
        while (header := _recv_exact(conn, SEED_HEADER)) is not None:
            message = _recv_exact(conn, int(header.decode("utf-8")))
            if message is None or message == b"!DISCONNECT":
                return
            conn.sendall(text.seed_reply(message.decode("utf-8")).encode("utf-8"))


def _seed_server() -> None:
    """The lab's start(): accept, and one thread per connection."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((HOST, 0))
    server.listen()
    print(f"{LISTENING} seed on tcp://{HOST}:{server.getsockname()[1]}", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_seed_connection, args=(conn,), daemon=True).start()


class ZeroFaultContext(ServerContext):
    """A server context whose every peer gets fault links with all probabilities zero."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["faults"] = LinkFaults()
        super().__init__(*args, **kwargs)
        self._numbered = 0

    def links_for_peer(self, *, stream: bool) -> Links:
        self._numbered += 1
        name, spec = f"server-peer{self._numbered}", LinkFaults()
        request, reply = (
            FaultLink(spec, self.seed, f"{name}/{d.value}", stream=stream)
            for d in (Direction.REQUEST, Direction.REPLY)
        )
        return Links(request, reply)


def serve(
    peer: str,
    transport: str,
    service: str,
    loop: str,
    fault_layer: bool,
    workers: int = 1,
    framing: str = "length",
    prime_processes: int = 1,
) -> int:
    """Run one peer in this process until it is terminated."""
    if workers != 1 and peer != "ours":
        raise ValueError("workers > 1 is for the ours peer")
    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if peer == "echo":
        asyncio.run(_echo_server(transport))
        return 0
    if peer == "seed":
        _seed_server()
        return 0
    from services.programs import cli, server

    if fault_layer:
        # The CLI is the server a user runs; only its context class changes here
        # (in services.programs.server, which builds it; forked workers inherit the change).
        server.ServerContext = ZeroFaultContext  # type: ignore[attr-defined]
    argv = ["serve", service, "--transport", transport, "--port", "0", "--framing", framing]
    argv += ["--prime-processes", str(prime_processes)]  # used by numbers only
    return cli.main([*argv, "--workers", str(workers)])


@dataclass
class Peer:
    """A running peer process."""

    label: str
    kind: str
    transport: str
    service: str
    port: int
    process: subprocess.Popen[str]
    stopped: str = ""  # the server's [STOPPED] counters line, once stopped
    framing: str = "length"  # "seed": speaks the lab's protocol (ours --framing seed)


def start_peer(
    label: str,
    kind: str,
    transport: str,
    service: str = "text",
    *,
    loop: str = "asyncio",
    fault_layer: bool = False,
    workers: int = 1,
    framing: str = "length",
    prime_processes: int = 1,
    timeout: float = 20.0,
) -> Peer:
    command = [sys.executable, "-m", "experiments.roundtrip", "--serve", kind]
    command += ["--transport", transport, "--service", service, "--loop", loop]
    command += ["--workers", str(workers), "--framing", framing]
    command += ["--prime-processes", str(prime_processes)]
    if fault_layer:
        command.append("--fault-layer")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    match = _PORT_RE.search(line) if LISTENING in line else None
    if match is None:
        process.kill()
        process.wait(timeout=10)
        raise RuntimeError(f"peer {label} did not start: {line!r}")
    return Peer(label, kind, transport, service, int(match.group(1)), process, framing=framing)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of process ``pid`` and its live children (workers).

    From /proc (Linux): every thread of a process counts in its own stat line;
    forked workers are found by their parent pid. 0.0 where /proc is missing.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else ():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        # After the ")" that ends the command: state, ppid, ..., utime (12th), stime.
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def stop_peer(peer: Peer) -> None:
    peer.process.terminate()
    try:
        out, _ = peer.process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        peer.process.kill()
        out, _ = peer.process.communicate(timeout=10)
    peer.stopped = next((ln for ln in (out or "").splitlines() if "[STOPPED]" in ln), "")


# --------------------------------------------------------------------------
# Workloads: what a client sends, how it sees that a reply is complete


@dataclass
class Workload:
    """Requests for one peer: ``message(client, seq)`` -> (bytes to send, reply token).

    ``framing`` is ``length`` (4-byte prefix), ``datagram`` or ``fixed`` (the
    seed's unframed reply, ``reply_size`` bytes). A UDP reply counts only if it
    contains the token (so a late reply never answers a later request).
    ``check`` validates the first reply of every client.
    """

    framing: str
    message: Callable[[int, int], tuple[bytes, bytes]]
    check: Callable[[bytes], bool]
    reply_size: int = 0


def _ok_reply(data: bytes) -> bool:
    with contextlib.suppress(WireError):
        return decode_reply(data).status is Status.OK
    return False


def _cycled(requests: list[Request], stream: bool) -> Callable[[int, int], tuple[bytes, bytes]]:
    table = []
    for request in requests:
        data = encode_request(request)
        table.append((frame(data) if stream else data, f'"{request.id}"'.encode()))
    size = len(table)
    return lambda client, seq: table[(client + seq) % size]


def service_workload(
    service: str,
    transport: str,
    *,
    token: str = "",
    echo: bool = False,
    args: dict[str, Any] | None = None,
) -> Workload:
    """Requests of ``service`` as our clients send them (to ours, or to the echo server).

    ``args``: text and numbers requests with these arguments instead of the usual ones.
    """
    stream = transport == "tcp"
    framing = "length" if stream else "datagram"
    if service == "bank":
        run = f"{time.monotonic_ns() % 10**9:x}"

        def deposit(client: int, seq: int) -> tuple[bytes, bytes]:
            req = Request(f"d{run}-{client}-{seq}", "bank.deposit", {"token": token, "amount": 1})
            data = encode_request(req)
            return (frame(data) if stream else data), f'"{req.id}"'.encode()

        return Workload(framing, deposit, _ok_reply)
    if service == "numbers":
        op, usual = "numbers.check", {"n": "2147483647"}
    else:
        op, usual = "text.convert", {"text": TEXT}
    requests = [Request(f"q{n}", op, usual if args is None else args) for n in range(64)]
    message = _cycled(requests, stream)
    if echo:
        return Workload(framing, message, lambda data: data.startswith(b"RT"))
    return Workload(framing, message, _ok_reply)


def seed_workload() -> Workload:
    data = seed_frame(TEXT)
    reply = text.seed_reply(TEXT).encode("utf-8")
    return Workload("fixed", lambda c, s: (data, b""), lambda r: r == reply, len(reply))


# --------------------------------------------------------------------------
# The load client


@dataclass
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


# --------------------------------------------------------------------------
# The quick check: python -m experiments.roundtrip


def _quick(transports: Sequence[str], seconds: float, rounds: int) -> None:
    from tabulate import tabulate

    from experiments.audit import percentile

    rows = []
    for transport in transports:
        peers = [start_peer("ours", "ours", transport), start_peer("echo", "echo", transport)]
        try:
            rates: dict[str, list[float]] = {p.label: [] for p in peers}
            lat: dict[str, list[float]] = {p.label: [] for p in peers}
            for _ in range(rounds):
                for p in peers:
                    load = service_workload("text", transport, echo=p.kind == "echo")
                    s = asyncio.run(drive(transport, p.port, load, 1, seconds=seconds))
                    rates[p.label].append(s.rate)
                    lat[p.label] += s.latencies
        finally:
            for p in peers:
                stop_peer(p)
        for label in rates:
            us = sorted(x * 1e6 for x in lat[label])
            rate = sorted(rates[label])[len(rates[label]) // 2]
            echo = sorted(rates["echo"])[len(rates["echo"]) // 2]
            rows.append(
                [
                    transport,
                    label,
                    round(rate),
                    percentile(us, 50),
                    percentile(us, 99),
                    us[-1] if us else 0.0,
                    rate / echo,
                ]
            )
    print(f"1 client, text.convert({TEXT!r}), {rounds} alternating rounds of {seconds} s")
    headers = ["transport", "server", "round trips/s", "p50 us", "p99 us", "max us", "/ echo"]
    print(tabulate(rows, headers, floatfmt=".2f"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.roundtrip", description=__doc__)
    parser.add_argument("--transports", default="tcp,udp")
    parser.add_argument("--seconds", type=float, default=1.0, help="measured window per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", choices=PEERS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--transport", choices=("tcp", "udp"), default="tcp", help=argparse.SUPPRESS
    )
    parser.add_argument("--service", default="text", help=argparse.SUPPRESS)
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio", help=argparse.SUPPRESS
    )
    parser.add_argument("--fault-layer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument(
        "--framing", choices=("length", "seed"), default="length", help=argparse.SUPPRESS
    )
    parser.add_argument("--prime-processes", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(
            args.serve,
            args.transport,
            args.service,
            args.loop,
            args.fault_layer,
            args.workers,
            args.framing,
            args.prime_processes,
        )
    _quick(args.transports.split(","), args.seconds, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
