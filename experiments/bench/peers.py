"""The server processes a benchmark compares (peers), started and stopped from the client side.

Each peer runs in its own process (``python -m experiments.bench.peers PEER
...``, as a user would run a server) and prints one ``[LISTENING] ...:PORT``
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

``start_peer`` starts one and reads its port, ``stop_peer`` stops it and keeps
its ``[STOPPED]`` counters line, ``cpu_seconds`` reads its CPU time from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import re
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.framework.options import config_from
from services import text
from transports.aio.driver import STREAM_READ_SIZE, limit_read_size
from transports.aio.udp import size_receive_buffer
from transports.framing import SEED_HEADER

LISTENING = "[LISTENING]"
HOST = "127.0.0.1"
PEERS = ("ours", "echo", "seed")
_PORT_RE = re.compile(r"://[^\s]*:(\d+)")


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


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


@dataclass(frozen=True)
class PeerConfig:
    """How to run one peer (the command line of ``python -m experiments.bench.peers``)."""

    peer: str
    transport: str = "tcp"
    service: str = "text"
    loop: str = "asyncio"
    fault_layer: bool = False
    workers: int = 1
    framing: str = "length"
    prime_processes: int = 1

    def argv(self) -> list[str]:
        """This config as the peer process's arguments."""
        argv = [self.peer, "--transport", self.transport, "--service", self.service]
        argv += ["--loop", self.loop, "--workers", str(self.workers), "--framing", self.framing]
        argv += ["--prime-processes", str(self.prime_processes)]
        return [*argv, "--fault-layer"] if self.fault_layer else argv


def serve(cfg: PeerConfig) -> int:
    """Run one peer in this process until it is terminated."""
    if cfg.workers != 1 and cfg.peer != "ours":
        raise ValueError("workers > 1 is for the ours peer")
    if cfg.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if cfg.peer == "echo":
        asyncio.run(_echo_server(cfg.transport))
        return 0
    if cfg.peer == "seed":
        _seed_server()
        return 0
    from services.programs import cli

    argv = ["serve", cfg.service, "--transport", cfg.transport, "--port", "0"]
    if cfg.fault_layer:
        argv.append("--fault-layer")
    argv += ["--framing", cfg.framing]
    argv += ["--prime-processes", str(cfg.prime_processes)]  # used by numbers only
    return cli.main([*argv, "--workers", str(cfg.workers)])


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
    cfg = PeerConfig(kind, transport, service, loop, fault_layer, workers, framing,
                     prime_processes)  # fmt: skip
    command = [sys.executable, "-m", "experiments.bench.peers", *cfg.argv()]
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.bench.peers",
        description="Run one benchmark peer until terminated (started by start_peer).",
    )
    parser.add_argument("peer", choices=PEERS)
    parser.add_argument("--transport", choices=("tcp", "udp"), default="tcp")
    parser.add_argument("--service", default="text")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--fault-layer", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--framing", choices=("length", "seed"), default="length")
    parser.add_argument("--prime-processes", type=int, default=1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return serve(config_from(PeerConfig, build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
