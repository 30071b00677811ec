"""``python -m experiments.roundtrip``: sequential round trips per second.

One client sends requests one at a time to the text service over TCP and UDP,
and, in the same run and with the same client, to a minimal asyncio echo
server: the ceiling that any server on this machine and event loop can reach.
Each server runs in its own process (as a user would run it); rounds
alternate between ours and the echo server so drift on a shared machine hits
both alike. Reports the ratio ours / echo.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from tabulate import tabulate

from experiments.audit import percentile
from experiments.cli import environment
from transports.framing import LengthPrefixDecoder, frame
from transports.wire import Request, encode_request

LISTENING = "LISTENING"


class _EchoTcp(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


class _EchoUdp(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


async def echo_server(transport: str) -> None:
    """The ceiling: echo every byte back, nothing else. Prints its port."""
    loop = asyncio.get_running_loop()
    if transport == "tcp":
        server = await loop.create_server(_EchoTcp, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    else:
        udp, _ = await loop.create_datagram_endpoint(_EchoUdp, local_addr=("127.0.0.1", 0))
        port = udp.get_extra_info("sockname")[1]
    print(f"[{LISTENING}] echo on {transport}://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


class _RawClient(asyncio.Protocol, asyncio.DatagramProtocol):
    """The same minimal client for every server: send, wait for one message."""

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.decoder = LengthPrefixDecoder()
        self.waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.decoder.feed(data)
        while (message := self.decoder.next_message()) is not None:
            self._deliver(message)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._deliver(data)

    def _deliver(self, message: bytes) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(message)

    async def round_trip(self, message: bytes) -> bytes:
        self.waiter = asyncio.get_running_loop().create_future()
        if self.stream:
            self.transport.write(frame(message))  # type: ignore[attr-defined]
        else:
            self.transport.sendto(message)  # type: ignore[attr-defined]
        return await asyncio.wait_for(self.waiter, 2.0)


async def measure(transport: str, port: int, requests: int) -> list[float]:
    """Round-trip latencies (seconds) of ``requests`` sequential requests."""
    loop = asyncio.get_running_loop()
    client = _RawClient(stream=transport == "tcp")
    if transport == "tcp":
        await loop.create_connection(lambda: client, "127.0.0.1", port)
    else:
        await loop.create_datagram_endpoint(lambda: client, remote_addr=("127.0.0.1", port))
    latencies = []
    for n in range(requests):
        message = encode_request(Request(f"bench-{n}", "text.convert", {"text": "hello world"}))
        started = time.perf_counter()
        await client.round_trip(message)
        latencies.append(time.perf_counter() - started)
    client.transport.close()
    return latencies


def start(command: list[str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if LISTENING not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1].split()[0])


def run(transports: Sequence[str], requests: int, rounds: int) -> list[list[object]]:
    rows = []
    for transport in transports:
        ours = ["-m", "services", "serve", "text", "--transport", transport, "--port", "0"]
        echo = ["-m", "experiments.roundtrip", "--echo-server", transport]
        servers = {"ours": start([sys.executable, *ours]), "echo": start([sys.executable, *echo])}
        rates: dict[str, list[float]] = {name: [] for name in servers}
        latencies: dict[str, list[float]] = {name: [] for name in servers}
        try:
            for _ in range(rounds):
                for name, (_, port) in servers.items():
                    sample = asyncio.run(measure(transport, port, requests))
                    rates[name].append(len(sample) / sum(sample))
                    latencies[name].extend(sample)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=10)
        for name in servers:
            lat = sorted(x * 1e6 for x in latencies[name])
            rows.append([
                transport, name, round(statistics.median(rates[name])),
                percentile(lat, 50), percentile(lat, 99), lat[-1],
                statistics.median(rates[name]) / statistics.median(rates["echo"]),
            ])  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.roundtrip", description=__doc__)
    parser.add_argument("--transports", default="tcp,udp")
    parser.add_argument("--requests", type=int, default=5000, help="per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--echo-server", choices=("tcp", "udp"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_server:
        asyncio.run(echo_server(args.echo_server))
        return 0
    rows = run(args.transports.split(","), args.requests, args.rounds)
    env = environment()
    print(
        f"Sequential round trips, 1 client, text.convert('hello world'), {args.rounds} alternating "
        f"rounds x {args.requests} requests; median round; Python {env['python']}, "
        f"{env['cpus']} CPUs, servers in their own processes."
    )
    headers = [
        "transport",
        "server",
        "round trips/s",
        "p50 us",
        "p99 us",
        "max us",
        "ratio to echo",
    ]
    print(tabulate(rows, headers, floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
