"""What the fault layer costs the server with every probability zero.

The server path of one ``text.convert`` request (the TCP or UDP protocol
object and the endpoint, no socket), without fault links and with a
zero-probability link per direction (``ServerContext(faults=LinkFaults())``,
what ``serve --fault-layer`` runs), two ways:

* ``cpu_cost``: CPU time per request, best of alternating batches. Cheap, but
  on a shared machine it moves by several percent between runs.
* ``instruction_cost``: instructions per request counted by valgrind's
  callgrind, which do not move with load. The per-request figure is the
  difference between runs of ``LARGE`` and ``SMALL`` requests (start-up
  cancels out), less the same difference for building the requests alone.
  Skipped (None) where valgrind is not installed.

``python -m experiments.fault_layer`` prints both (about 2.5 minutes, ten
runs under valgrind); ``python -m experiments.throughput --instructions``
includes the instruction counts in its report. ``python -m
experiments.bench.fault_layer TRANSPORT {with,without,none} N`` runs N
requests through one path: the child process callgrind counts.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from experiments.framework.options import experiment_parser
from experiments.framework.records import Record
from services.text import TextService
from transports.aio.driver import ServerContext
from transports.aio.tcp import _ServerConnection
from transports.aio.udp import _ServerProtocol
from transports.endpoint import ServerEndpoint
from transports.faults import LinkFaults
from transports.framing import frame
from transports.wire import Request, encode_request

TRANSPORTS = ("tcp", "udp")
KINDS = ("without", "with")
SMALL, LARGE = 1000, 3000
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


@dataclass(frozen=True, kw_only=True)
class CpuCost(Record):
    """CPU µs per request on one transport's server path, without and with the layer."""

    transport: str
    without_us: float
    with_us: float
    ratio: float  # without / with


@dataclass(frozen=True, kw_only=True)
class InstructionCost(Record):
    """Instructions per request on one transport's server path, without and with the layer."""

    transport: str
    without_instructions: float
    with_instructions: float
    ratio: float  # without / with


class _NullTransport(asyncio.Transport):
    """Swallows writes: the server path without a socket."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def messages(count: int) -> list[bytes]:
    """``count`` encoded text.convert requests, each with its own id."""
    return [
        encode_request(Request(f"c1-{i}", "text.convert", {"text": "hello world"}))
        for i in range(count)
    ]


def server_path(transport: str, kind: str) -> Callable[[bytes], None]:
    """Hand one encoded request to a fresh server protocol (call on a running loop)."""
    faults = LinkFaults() if kind == "with" else None  # with: every probability zero
    ctx = ServerContext(ServerEndpoint(TextService()), faults=faults)
    if transport == "tcp":
        tcp = _ServerConnection(ctx, None)
        tcp.connection_made(_NullTransport())
        return lambda message: tcp.data_received(frame(message))
    udp = _ServerProtocol(ctx)
    udp.connection_made(_NullTransport())
    return lambda message: udp.datagram_received(message, ("127.0.0.1", 1))


def cpu_cost(repeat: int = 15, batch: int = 2000) -> list[CpuCost]:
    """CPU µs per request without and with the layer: best of ``repeat`` alternating batches."""
    batch_messages = messages(batch)

    async def run() -> list[CpuCost]:
        out = []
        for transport in TRANSPORTS:
            paths = {kind: server_path(transport, kind) for kind in KINDS}
            best = dict.fromkeys(KINDS, float("inf"))
            for _ in range(repeat):  # alternating, so drift hits both alike
                for kind, handle in paths.items():
                    begun = time.process_time()
                    for message in batch_messages:
                        handle(message)
                    spent = (time.process_time() - begun) / batch * 1e6
                    best[kind] = min(best[kind], spent)
            without, with_ = best["without"], best["with"]
            ratio = round(without / with_, 3)
            out.append(
                CpuCost(transport=transport, without_us=round(without, 2),
                        with_us=round(with_, 2), ratio=ratio)
            )  # fmt: skip
        return out

    return asyncio.run(run())


def instruction_cost() -> list[InstructionCost] | None:
    """Instructions per request without and with the layer (callgrind); None without valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None

    def count(transport: str, kind: str, n: int) -> int:
        command = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        command += [sys.executable, "-m", "experiments.bench.fault_layer", transport, kind, str(n)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
        match = _COLLECTED.search(done.stderr)
        if match is None:
            raise RuntimeError(f"no callgrind total in: {done.stderr[-300:]!r}")
        return int(match.group(1))

    def per_request(transport: str, kind: str) -> float:
        return (count(transport, kind, LARGE) - count(transport, kind, SMALL)) / (LARGE - SMALL)

    building = per_request("tcp", "none")  # the same requests for every path
    out = []
    for transport in TRANSPORTS:
        cost = {kind: per_request(transport, kind) - building for kind in KINDS}
        without, with_ = cost["without"], cost["with"]
        out.append(InstructionCost(transport=transport, without_instructions=round(without, 0),
                                   with_instructions=round(with_, 0),
                                   ratio=round(without / with_, 3)))  # fmt: skip
    return out


def _parser() -> argparse.ArgumentParser:
    parser = experiment_parser(
        "experiments.fault_layer",
        "What the fault layer costs the server with every probability zero: "
        "CPU time and (with valgrind) instructions per request, without and with the layer "
        "(about 2.5 minutes). With TRANSPORT KIND N: run N requests through one server path, "
        "the child process that callgrind counts.",
    )
    parser.add_argument(
        "transport", nargs="?", choices=TRANSPORTS, metavar="TRANSPORT", help="tcp or udp"
    )
    parser.add_argument(
        "kind",
        nargs="?",
        choices=(*KINDS, "none"),
        metavar="KIND",
        help="with, without or none (the layer)",
    )
    parser.add_argument("n", nargs="?", type=int, metavar="N", help="requests to run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Both costs as tables; with arguments, a child of ``instruction_cost``."""
    args = _parser().parse_args(argv)
    if args.transport is None:
        from tabulate import tabulate

        print("CPU per request, best of 15 alternating batches of 2000:")
        print(tabulate([r.to_dict() for r in cpu_cost()], headers="keys", tablefmt="github"))
        counted = instruction_cost()
        if counted is None:
            print("instructions: valgrind is not installed")
        else:
            print(f"instructions per request (callgrind, {LARGE} minus {SMALL} requests):")
            print(tabulate([r.to_dict() for r in counted], headers="keys", tablefmt="github"))
        return 0
    if args.kind is None or args.n is None:
        _parser().error("give TRANSPORT KIND N together, or none of them")
    transport, kind = args.transport, args.kind
    batch = messages(args.n)
    if kind != "none":

        async def run() -> None:
            handle = server_path(transport, kind)
            for message in batch:
                handle(message)

        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
